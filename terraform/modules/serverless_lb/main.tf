# Global external Application Load Balancer in front of serverless backends: one IP, one Google-managed
# certificate for every host, host-based routing, HTTP->HTTPS redirect, TLS 1.2+ and a Cloud Armor policy.

locals {
  all_hosts = sort(distinct(flatten(concat(
    [for b in var.serverless_backends : b.hosts],
    [for b in var.bucket_backends : b.hosts],
  ))))
  backend_ids = merge(
    { for k, b in google_compute_backend_service.serverless : k => b.id },
    { for k, b in google_compute_backend_bucket.static : k => b.id },
  )
  routes = merge(
    { for k, b in var.serverless_backends : k => b.hosts },
    { for k, b in var.bucket_backends : k => b.hosts },
  )
}

resource "google_compute_global_address" "lb" {
  project = var.project_id
  name    = "${var.name}-lb-ip"
}

resource "google_compute_managed_ssl_certificate" "lb" {
  project = var.project_id
  # A changed host list needs a new certificate; the hash keeps names unique for create_before_destroy.
  name = "${var.name}-cert-${substr(sha256(join(",", local.all_hosts)), 0, 8)}"
  managed {
    domains = local.all_hosts
  }
  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_region_network_endpoint_group" "serverless" {
  for_each              = var.serverless_backends
  project               = var.project_id
  name                  = "${var.name}-${each.key}-neg"
  region                = var.region
  network_endpoint_type = "SERVERLESS"
  cloud_run {
    service = each.value.cloud_run_service
  }
}

resource "google_compute_security_policy" "edge" {
  project     = var.project_id
  name        = "${var.name}-edge"
  description = "Per-IP rate limit and known-exploit filter in front of every serverless backend."

  rule {
    action      = "deny(403)"
    priority    = 1000
    description = "Log4j / known CVE probes (no Java here, but such probes are never legitimate)."
    match {
      expr {
        expression = "evaluatePreconfiguredWaf('cve-canary')"
      }
    }
  }

  rule {
    action      = "throttle"
    priority    = 2000
    description = "Per-client-IP request rate limit."
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
    rate_limit_options {
      conform_action = "allow"
      exceed_action  = "deny(429)"
      enforce_on_key = "IP"
      rate_limit_threshold {
        count        = var.rate_limit_per_minute
        interval_sec = 60
      }
    }
  }

  rule {
    action      = "allow"
    priority    = 2147483647
    description = "Default: allow."
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
  }
}

resource "google_compute_backend_service" "serverless" {
  for_each              = var.serverless_backends
  project               = var.project_id
  name                  = "${var.name}-${each.key}-backend"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"
  security_policy       = google_compute_security_policy.edge.id
  # Serverless NEG backends take their timeout from the Cloud Run service (3600 s for WebSockets).
  backend {
    group = google_compute_region_network_endpoint_group.serverless[each.key].id
  }
  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

resource "google_compute_backend_bucket" "static" {
  for_each    = var.bucket_backends
  project     = var.project_id
  name        = "${var.name}-${each.key}-static"
  bucket_name = each.value.bucket
  enable_cdn  = true
}

resource "google_compute_url_map" "https" {
  project         = var.project_id
  name            = "${var.name}-https"
  default_service = local.backend_ids[var.default_backend]

  dynamic "host_rule" {
    for_each = local.routes
    content {
      hosts        = host_rule.value
      path_matcher = host_rule.key
    }
  }

  dynamic "path_matcher" {
    for_each = local.routes
    content {
      name            = path_matcher.key
      default_service = local.backend_ids[path_matcher.key]
    }
  }
}

resource "google_compute_ssl_policy" "tls" {
  project         = var.project_id
  name            = "${var.name}-tls"
  profile         = "RESTRICTED"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "https" {
  project          = var.project_id
  name             = "${var.name}-https"
  url_map          = google_compute_url_map.https.id
  ssl_certificates = [google_compute_managed_ssl_certificate.lb.id]
  ssl_policy       = google_compute_ssl_policy.tls.id
}

resource "google_compute_global_forwarding_rule" "https" {
  project               = var.project_id
  name                  = "${var.name}-https"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.lb.address
  port_range            = "443"
  target                = google_compute_target_https_proxy.https.id
}

resource "google_compute_url_map" "redirect" {
  project = var.project_id
  name    = "${var.name}-http-redirect"
  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "redirect" {
  project = var.project_id
  name    = "${var.name}-http-redirect"
  url_map = google_compute_url_map.redirect.id
}

resource "google_compute_global_forwarding_rule" "http" {
  project               = var.project_id
  name                  = "${var.name}-http"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.lb.address
  port_range            = "80"
  target                = google_compute_target_http_proxy.redirect.id
}
