# Progressive delivery: every new revision of auth, the agent API, the agent worker (gen2 functions, whose
# traffic lives on their Cloud Run service) and ws_bridge (Cloud Run service) is released as a canary by
# the netra-release job (python -m shared.deploy release start, shared/deploy/canary.py): ready check,
# smoke test of the tagged URL, 5/25/50/100 % with a gate on Cloud Monitoring at each step, automatic
# rollback. New revisions take no traffic by themselves (functions: all_traffic_on_latest_revision =
# false; ws_bridge: the first release pins its traffic). docs/DEPLOY.md says why this runs the project's
# own engine and not Cloud Deploy.

locals {
  # Cloud Run service of each workload, and what makes a new revision of it (the release trigger).
  release_services = merge(
    {
      for k in keys(local.functions) : k => {
        service  = module.function[k].name
        revision = join(",", [module.function_source[k].object, sha256(jsonencode(local.service_env[k]))])
      }
    },
    {
      "ws-bridge" = {
        service  = google_cloud_run_v2_service.ws_bridge.name
        revision = google_cloud_run_v2_service.ws_bridge.latest_created_revision
      }
    },
  )
  release_job_name = "${var.name_prefix}-release"
}

# The release engine's identity: it reads revisions and moves traffic of exactly these four services
# (run.developer on each, and actAs on their runtime identities, which Cloud Run requires for any service
# update), smoke-tests the private worker (invoker), and reads metrics (monitoring.viewer: Monitoring has no
# narrower scope than the project). Nothing else: no secrets, no database, no Pub/Sub.
resource "google_service_account" "release" {
  project      = var.project_id
  account_id   = local.release_job_name
  display_name = "Canary releases: traffic of the Netra services, read-only metrics"
  depends_on   = [time_sleep.apis]
}

resource "google_cloud_run_service_iam_member" "release_functions" {
  for_each = local.functions
  project  = var.project_id
  location = var.region
  service  = module.function[each.key].name
  role     = "roles/run.developer"
  member   = "serviceAccount:${google_service_account.release.email}"
}

resource "google_cloud_run_v2_service_iam_member" "release_ws_bridge" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.ws_bridge.name
  role     = "roles/run.developer"
  member   = "serviceAccount:${google_service_account.release.email}"
}

resource "google_cloud_run_service_iam_member" "release_smoke_worker" {
  project  = var.project_id
  location = var.region
  service  = module.function["agent-worker"].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.release.email}"
}

resource "google_service_account_iam_member" "release_act_as" {
  for_each           = local.release_services
  service_account_id = google_service_account.workload[each.key].name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.release.email}"
}

resource "google_project_iam_member" "release_metrics" {
  project = var.project_id
  role    = "roles/monitoring.viewer"
  member  = "serviceAccount:${google_service_account.release.email}"
}

# The engine as a Cloud Run job from the app image: its JSON log lines (CLOUD_RUN_JOB is set) reach Cloud
# Logging, where the rollback alert below matches them. Egress through the connector for all traffic, so
# the smoke test reaches the candidate's tagged run.app URL as internal traffic (the services accept only
# internal and load-balancer traffic); Google APIs through Private Google Access on the connector subnet.
resource "google_cloud_run_v2_job" "release" {
  project             = var.project_id
  location            = var.region
  name                = local.release_job_name
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    task_count = 1
    template {
      service_account = google_service_account.release.email
      # Ready wait (10 min) + 3 steps of bake and gate + a held step (30 min): well inside 2 h.
      timeout     = "7200s"
      max_retries = 0 # a retry would start the release again; a rolled-back revision is refused anyway

      vpc_access {
        connector = google_vpc_access_connector.serverless.id
        egress    = "ALL_TRAFFIC"
      }

      containers {
        image   = local.app_image
        command = ["python", "-m", "shared.deploy"]
        args    = ["release", "--help"] # each execution passes its own (--args), see terraform_data.release

        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
        }
      }
    }
  }

  depends_on = [
    terraform_data.app_image,
    google_artifact_registry_repository_iam_member.run_agent_reader,
  ]
}

# `terraform apply` starts a release of every service whose revision changed, instead of moving its traffic:
# the job runs in the background (--async; it lasts ~20-30 min), `make release-watch` follows it, a rollback
# alerts. With release_on_apply = false the apply only creates the revisions (no traffic) and an operator
# starts each release with `make release-start`.
resource "terraform_data" "release" {
  for_each         = var.release_on_apply ? local.release_services : {}
  triggers_replace = [each.value.revision, google_cloud_run_v2_job.release.id]

  provisioner "local-exec" {
    command = join(" ", [
      "gcloud run jobs execute ${google_cloud_run_v2_job.release.name}",
      "--project=${var.project_id}",
      "--region=${var.region}",
      "--async",
      "--args=release,start,--service,${each.value.service},--region,${var.region},--project,${var.project_id},--env,${var.environment}",
    ])
  }

  depends_on = [
    module.function,
    google_cloud_run_v2_service.ws_bridge,
    google_cloud_run_service_iam_member.release_functions,
    google_cloud_run_v2_service_iam_member.release_ws_bridge,
    google_cloud_run_service_iam_member.release_smoke_worker,
    google_service_account_iam_member.release_act_as,
    google_project_iam_member.release_metrics,
    # The gate queries the log-based metrics below; Monitoring knows a new one only after up to 10 minutes.
    google_logging_metric.instance_start_failures,
    google_logging_metric.error_logs,
    time_sleep.log_metrics,
  ]
}

# The gate's log-based figures per revision (shared/deploy/release_policy.toml names them).
resource "google_logging_metric" "instance_start_failures" {
  project     = var.project_id
  name        = "${var.name_prefix}/instance_start_failures"
  description = "Cloud Run instances of a Netra service that failed to start (startup probe failed, container exited during start)."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=~\"^${var.name_prefix}-\" AND severity>=ERROR AND (textPayload:\"probe failed\" OR textPayload:\"Container called exit\" OR textPayload:\"failed to start\")"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
  depends_on = [time_sleep.apis]
}

resource "google_logging_metric" "error_logs" {
  project     = var.project_id
  name        = "${var.name_prefix}/error_logs"
  description = "ERROR (or worse) entries a Netra revision logs itself; request logs excluded (the gate counts 5xx from request_count)."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=~\"^${var.name_prefix}-\" AND severity>=ERROR AND NOT logName:\"run.googleapis.com%2Frequests\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
  depends_on = [time_sleep.apis]
}

# One notification per rolled-back or refused release, from the engine's structured log entry.
resource "google_monitoring_alert_policy" "release_rolled_back" {
  project               = var.project_id
  display_name          = "Netra ${var.environment}: release rolled back"
  combiner              = "OR"
  notification_channels = local.notification_channels
  documentation {
    content   = "A canary release was rolled back or refused (jsonPayload.reason says why; jsonPayload.candidate stays tagged rolled-back for inspection). Stable serves 100 %. See docs/DEPLOY.md, step 8."
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "release_rolled_back or release_not_ready logged by the release job"
    condition_matched_log {
      filter = "resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"${local.release_job_name}\" AND jsonPayload.event=(\"release_rolled_back\" OR \"release_not_ready\")"
      label_extractors = {
        service   = "EXTRACT(jsonPayload.service)"
        candidate = "EXTRACT(jsonPayload.candidate)"
      }
    }
  }
  alert_strategy {
    notification_rate_limit {
      period = "300s"
    }
    auto_close = "1800s"
  }
}

output "release_job" {
  description = "Cloud Run job that runs canary releases (`make release-start` executes it)."
  value       = google_cloud_run_v2_job.release.name
}
