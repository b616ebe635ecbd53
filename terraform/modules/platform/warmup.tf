# Warm-up. Where a cold start would hurt most (ws_bridge: every client reconnects to it), min instances
# keep instances warm; set per service in the environment's tfvars. For HTTP functions running with
# min_instances = 0 (cheaper for a quiet staging), a Cloud Scheduler job calls /health/ready with an OIDC
# token every few minutes instead, which keeps an instance alive most of the time at the cost of a request.

locals {
  warmup_targets = {
    for k, min in { auth = var.min_instances.auth, "agent-api" = var.min_instances.agent_api } :
    k => module.function[k].uri if min == 0
  }
}

resource "google_cloud_run_service_iam_member" "warmup_invoker" {
  for_each = local.warmup_targets
  project  = var.project_id
  location = var.region
  service  = module.function[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_cloud_scheduler_job" "warmup" {
  for_each         = local.warmup_targets
  project          = var.project_id
  region           = var.region
  name             = "${var.name_prefix}-warmup-${each.key}"
  description      = "Keeps one ${each.key} instance warm by calling /health/ready."
  schedule         = var.warmup_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "30s"

  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "GET"
    uri         = "${each.value}/health/ready"
    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = each.value
    }
  }

  depends_on = [time_sleep.apis]
}
