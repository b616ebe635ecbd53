# The ws_bridge Cloud Run service: long-lived WebSockets (request timeout 3600 s), session affinity so a
# reconnecting client tends to land on the instance holding its state, CPU always allocated (its Pub/Sub
# streaming pull and heartbeats run between requests), startup CPU boost, warm instances, and a startup
# probe on /health/ready so a revision gets traffic only once its critical components are up.

resource "google_cloud_run_v2_service" "ws_bridge" {
  project             = var.project_id
  location            = var.region
  name                = "${var.name_prefix}-ws-bridge"
  ingress             = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
  deletion_protection = var.deletion_protection
  # Public WebSocket endpoint: the invoker IAM check is off rather than granting run.invoker to allUsers, which
  # organizations with domain-restricted sharing (the default policy of new organizations) refuse. Ingress is
  # limited to the load balancer, and every connection must present a valid ticket or token.
  invoker_iam_disabled = true
  labels               = local.labels

  template {
    service_account                  = google_service_account.workload["ws-bridge"].email
    timeout                          = "3600s"
    session_affinity                 = true
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    max_instance_request_concurrency = var.ws_concurrency

    scaling {
      min_instance_count = var.min_instances.ws_bridge
      max_instance_count = var.max_instances.ws_bridge
    }

    vpc_access {
      connector = google_vpc_access_connector.serverless.id
      egress    = "PRIVATE_RANGES_ONLY"
    }

    containers {
      image   = local.app_image
      command = local.containers["ws-bridge"]

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "1Gi"
        }
        cpu_idle          = false
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = { for k, v in local.service_env["ws-bridge"] : k => v if v != "" }
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.workload_secrets["ws-bridge"]
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.secret[env.value].secret_id
              version = "latest"
            }
          }
        }
      }

      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 2
        timeout_seconds       = 2
        failure_threshold     = 45
        http_get {
          path = "/health/ready"
          port = 8080
        }
      }

      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
        http_get {
          path = "/health/live"
          port = 8080
        }
      }
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }

  lifecycle {
    # After the first deploy, traffic belongs to the canary releases (delivery.tf): the first one pins it to
    # the serving revision, so later revisions get traffic only through their own release.
    ignore_changes = [traffic]
  }

  # The startup probe gates the creation of a revision on the critical components (database, schema,
  # agent_events): everything they need at start must exist and be in effect before, and none of it may depend
  # on this service (tests/terraform/test_first_apply.py walks this). The keyset component (auth's public keys)
  # is not critical: auth's public host comes from the load balancer, which is created after this service.
  depends_on = [
    terraform_data.migrations,
    terraform_data.app_image,
    time_sleep.runtime_grants,
  ]
}
