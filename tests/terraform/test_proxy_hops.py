"""TRUSTED_PROXY_HOPS comes from the real topology in the Terraform, not from a default (issue 15, finding 2).

A workload that limits by client address must know how many X-Forwarded-For entries its own proxies append:
- a serverless backend of the external HTTPS load balancer whose ingress admits only internal traffic and the
  load balancer: every outside request passed the load balancer, which appends "<client>, <load balancer>",
  so the client is the 2nd entry from the right;
- a public Cloud Run URL without a load balancer: Google's front end appends the client only: 1;
- a load-balancer backend whose ingress is open to all has two paths with different counts: refused.
"""

from __future__ import annotations

import re
from typing import Any

from tests.terraform.hcl import platform

LB_ONLY_INGRESS = {"ALLOW_INTERNAL_AND_GCLB", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"}
OPEN_INGRESS = {"ALLOW_ALL", "INGRESS_TRAFFIC_ALL"}


def _workload_of_backend(reference: str) -> str:
    """module.function["auth"].name -> auth; google_cloud_run_v2_service.ws_bridge.name -> ws-bridge."""
    match = re.search(r'module\.function\["([\w-]+)"\]', reference)
    if match:
        return match.group(1)
    match = re.search(r"google_cloud_run_v2_service\.(\w+)\.name", reference)
    assert match, f"unknown load-balancer backend {reference!r}"
    return match.group(1).replace("_", "-")


def _ingress(tf: dict[str, Any], workload: str) -> str:
    sizing = tf["locals"]["function_sizing"]
    if workload in sizing:
        return sizing[workload]["ingress"]
    return tf["resource"]["google_cloud_run_v2_service"][workload.replace("-", "_")]["ingress"]


def expected_hops(tf: dict[str, Any], workload: str) -> int:
    backends = tf["module"]["lb"]["serverless_backends"]
    behind_lb = any(_workload_of_backend(b["cloud_run_service"]) == workload for b in backends.values())
    ingress = _ingress(tf, workload)
    if behind_lb:
        assert ingress in LB_ONLY_INGRESS, (
            f"{workload} is behind the load balancer but its ingress {ingress} also admits direct requests: "
            "the two paths append different numbers of X-Forwarded-For entries"
        )
        return 2
    assert ingress in OPEN_INGRESS, f"{workload}: ingress {ingress} is neither load-balancer-only nor public"
    return 1


def test_trusted_proxy_hops_follow_the_topology() -> None:
    tf = platform()
    env = tf["locals"]["service_env"]
    hops = tf["locals"]["trusted_proxy_hops"]
    assert env["auth"]["TRUSTED_PROXY_HOPS"] == "${tostring(local.trusted_proxy_hops.auth)}"
    for workload, value in hops.items():
        assert value == expected_hops(tf, workload), workload
    # Every workload whose settings read TRUSTED_PROXY_HOPS gets it from that map.
    for workload, variables in env.items():
        if "TRUSTED_PROXY_HOPS" in variables:
            assert workload in hops, workload
    assert "auth" in hops
