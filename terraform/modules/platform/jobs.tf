# Cloud Run jobs from the app image: the migration job (python -m shared.db.migrate, then grants for the
# IAM database users) and the usage rollup job (python -m functions.agent.rollup_job, on a schedule).
#
# The migration job runs during every apply (a no-op when the schema is current), and the functions and the
# ws_bridge service depend on it: new revisions are created only after the schema they need exists.
# Migrations must therefore be additive (expand, deploy, contract later), since the previous revisions
# keep serving while the job runs.

locals {
  jobs = {
    migrate = { timeout = "900s", memory = "512Mi", retries = 1 }
    rollup  = { timeout = "1800s", memory = "1Gi", retries = 2 }
  }
}

resource "google_cloud_run_v2_job" "job" {
  for_each            = local.jobs
  project             = var.project_id
  location            = var.region
  name                = "${var.name_prefix}-${each.key}"
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    task_count = 1
    template {
      service_account = google_service_account.workload[each.key].email
      timeout         = each.value.timeout
      max_retries     = each.value.retries

      vpc_access {
        connector = google_vpc_access_connector.serverless.id
        egress    = "PRIVATE_RANGES_ONLY"
      }

      containers {
        image   = local.app_image
        command = local.containers[each.key]

        resources {
          limits = {
            cpu    = "1"
            memory = each.value.memory
          }
        }

        dynamic "env" {
          for_each = { for k, v in local.service_env[each.key] : k => v if v != "" }
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = local.workload_secrets[each.key]
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
      }
    }
  }

  depends_on = [
    terraform_data.app_image,
    google_secret_manager_secret_version.db_migrator_password,
    time_sleep.runtime_grants,
  ]
}

# Run the migration job and wait for it, on every apply: a new revision can also come from a changed setting
# without a code change, and the job costs little when there is nothing to apply (plantimestamp() changes on
# each plan, so the plan always shows this one replacement). Needs gcloud on the machine running terraform; a
# failed migration fails the apply before any new revision is created.
resource "terraform_data" "migrations" {
  triggers_replace = [
    plantimestamp(),
    module.app_source.source_hash,
    google_cloud_run_v2_job.job["migrate"].id,
  ]

  provisioner "local-exec" {
    command = join(" ", [
      "gcloud run jobs execute ${google_cloud_run_v2_job.job["migrate"].name}",
      "--project=${var.project_id}",
      "--region=${var.region}",
      "--wait",
    ])
  }

  depends_on = [
    google_sql_user.migrator,
    google_sql_user.iam,
    google_sql_database.netra,
    time_sleep.runtime_grants,
  ]
}

# The scheduler may start the rollup job (and nothing else).
resource "google_cloud_run_v2_job_iam_member" "rollup_runner" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.job["rollup"].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_cloud_scheduler_job" "rollup" {
  project          = var.project_id
  region           = var.region
  name             = "${var.name_prefix}-rollup"
  description      = "Starts the usage rollup job."
  schedule         = var.rollup_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "60s"

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.job["rollup"].name}:run"
    oauth_token {
      service_account_email = google_service_account.scheduler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.rollup_runner]
}
