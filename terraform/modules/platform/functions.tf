# Cloud Functions gen2: auth and the agent REST API behind the load balancer, the agent worker pushed to by
# the "agent-worker" Pub/Sub subscription. Each runs as its own service account with the environment from
# settings.tf. They are deployed after the migration job has run (jobs.tf), so a new revision never takes
# traffic against an older schema.

locals {
  function_sizing = {
    auth = {
      min         = var.min_instances.auth
      max         = var.max_instances.auth
      memory      = "512Mi"
      cpu         = "1"
      concurrency = 16
      timeout     = 30
      ingress     = "ALLOW_INTERNAL_AND_GCLB"
    }
    "agent-api" = {
      min         = var.min_instances.agent_api
      max         = var.max_instances.agent_api
      memory      = "1Gi"
      cpu         = "1"
      concurrency = 16
      timeout     = 60
      ingress     = "ALLOW_INTERNAL_AND_GCLB"
    }
    # Few runs per instance: a run is CPU- and memory-heavy and its acknowledgement waits for its end.
    "agent-worker" = {
      min         = var.min_instances.agent_worker
      max         = var.max_instances.agent_worker
      memory      = "1Gi"
      cpu         = "1"
      concurrency = 4
      timeout     = 540
      ingress     = "ALLOW_INTERNAL_ONLY"
    }
  }
}

module "function" {
  source   = "../cloud_function"
  for_each = local.functions

  project_id            = var.project_id
  region                = var.region
  name                  = "${var.name_prefix}-${each.key}"
  description           = "Netra ${each.key} (${var.environment})"
  entry_point           = each.value.entry_point
  signature_type        = each.value.signature_type
  source_bucket         = module.function_source[each.key].bucket
  source_object         = module.function_source[each.key].object
  service_account_email = google_service_account.workload[each.key].email
  build_service_account = google_service_account.build.id
  docker_repository     = google_artifact_registry_repository.images.id
  vpc_connector         = google_vpc_access_connector.serverless.id
  labels                = local.labels

  environment        = { for k, v in local.service_env[each.key] : k => v if v != "" }
  secret_environment = { for k, key in local.workload_secrets[each.key] : k => google_secret_manager_secret.secret[key].secret_id }

  min_instances                  = local.function_sizing[each.key].min
  max_instances                  = local.function_sizing[each.key].max
  memory                         = local.function_sizing[each.key].memory
  cpu                            = local.function_sizing[each.key].cpu
  concurrency                    = local.function_sizing[each.key].concurrency
  timeout_seconds                = local.function_sizing[each.key].timeout
  ingress                        = local.function_sizing[each.key].ingress
  all_traffic_on_latest_revision = false # a new revision gets traffic from its canary release (delivery.tf)

  # The builds need their account's grants in effect (time_sleep.build_grants), the revisions their own
  # identities' (time_sleep.runtime_grants) and the current schema (terraform_data.migrations).
  depends_on = [
    terraform_data.migrations,
    time_sleep.build_grants,
    time_sleep.runtime_grants,
  ]
}

# auth and the API are public behind the load balancer (ingress: internal + load balancer only, so the
# run.app URL is not reachable from the internet); every request is authenticated by the application.
resource "google_cloud_run_service_iam_member" "public" {
  # checkov:skip=CKV_GCP_102: these are the public sign-in and REST endpoints of the product; ingress is limited to the load balancer and the application checks every token.
  for_each = toset(["auth", "agent-api"])
  project  = var.project_id
  location = var.region
  service  = module.function[each.key].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# The worker is private: only the Pub/Sub push identity may invoke it.
resource "google_cloud_run_service_iam_member" "worker_push" {
  project  = var.project_id
  location = var.region
  service  = module.function["agent-worker"].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.pubsub_push.email}"
}
