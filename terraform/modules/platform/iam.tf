# One service account per workload, with roles scoped to the exact secrets, topics, database instance and
# Firestore database it uses (see local.workloads and local.secret_env). Helper identities: the Pub/Sub push
# invoker, the Cloud Scheduler caller and the build account.

resource "google_service_account" "workload" {
  for_each     = local.workloads
  project      = var.project_id
  account_id   = "${var.name_prefix}-${each.key}"
  display_name = "Netra ${each.key} (${var.environment})"
  depends_on   = [time_sleep.apis]
}

resource "google_service_account" "pubsub_push" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-pubsub-push"
  display_name = "Pub/Sub push identity (invokes the agent worker)"
  depends_on   = [time_sleep.apis]
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "Cloud Scheduler identity (warm-up pings, rollup job)"
  depends_on   = [time_sleep.apis]
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "Builds function images and the app image"
  depends_on   = [time_sleep.apis]
}

locals {
  # Every workload writes structured logs, metrics and traces.
  telemetry_roles = ["roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/cloudtrace.agent"]
  telemetry_grants = {
    for pair in setproduct(keys(local.workloads), local.telemetry_roles) : "${pair[0]}|${pair[1]}" => {
      workload = pair[0]
      role     = pair[1]
    }
  }
  db_workloads        = { for w, cfg in local.workloads : w => cfg if cfg.database != "none" }
  firestore_workloads = { for w, cfg in local.workloads : w => cfg if cfg.firestore }
  topic_grants = merge([
    for w, cfg in local.workloads : { for t in cfg.publishes : "${w}|${t}" => { workload = w, topic = t } }
  ]...)
  sql_instance_resource = "projects/${var.project_id}/instances/${google_sql_database_instance.main.name}"
}

resource "google_project_iam_member" "telemetry" {
  for_each = local.telemetry_grants
  project  = var.project_id
  role     = each.value.role
  member   = "serviceAccount:${google_service_account.workload[each.value.workload].email}"
}

# Cloud SQL: connect (client) and log in with IAM (instanceUser), only on this platform's instance.
resource "google_project_iam_member" "sql_client" {
  for_each = local.db_workloads
  project  = var.project_id
  role     = "roles/cloudsql.client"
  member   = "serviceAccount:${google_service_account.workload[each.key].email}"
  condition {
    title      = "netra-instance-only"
    expression = "resource.name == \"${local.sql_instance_resource}\" && resource.service == \"sqladmin.googleapis.com\""
  }
}

resource "google_project_iam_member" "sql_instance_user" {
  for_each = local.db_iam_users
  project  = var.project_id
  role     = "roles/cloudsql.instanceUser"
  member   = "serviceAccount:${google_service_account.workload[each.key].email}"
  condition {
    title      = "netra-instance-only"
    expression = "resource.name == \"${local.sql_instance_resource}\" && resource.service == \"sqladmin.googleapis.com\""
  }
}

# Firestore: read/write documents in this platform's database only.
resource "google_project_iam_member" "firestore_user" {
  for_each = local.firestore_workloads
  project  = var.project_id
  role     = "roles/datastore.user"
  member   = "serviceAccount:${google_service_account.workload[each.key].email}"
  condition {
    title      = "netra-database-only"
    expression = "resource.name == \"projects/${var.project_id}/databases/${google_firestore_database.main.name}\""
  }
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.topic_grants
  project  = var.project_id
  topic    = google_pubsub_topic.topic[each.value.topic].name
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.workload[each.value.workload].email}"
}

# ws_bridge: each instance creates (and deletes) its own subscription to agent-events at start. Creating a
# subscription is a project-level permission; attaching it is granted on agent-events only.
resource "google_project_iam_custom_role" "ws_bridge_subscriptions" {
  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_ws_bridge_subscriptions"
  title       = "Netra ws_bridge per-instance subscriptions"
  description = "Create, read, consume and delete the per-instance ws-bridge-* subscriptions."
  permissions = [
    "pubsub.subscriptions.consume",
    "pubsub.subscriptions.create",
    "pubsub.subscriptions.delete",
    "pubsub.subscriptions.get",
  ]
  # Custom roles live in the IAM API, which a new project does not have enabled.
  depends_on = [time_sleep.apis]
}

resource "google_project_iam_member" "ws_bridge_subscriptions" {
  project = var.project_id
  role    = google_project_iam_custom_role.ws_bridge_subscriptions.id
  member  = "serviceAccount:${google_service_account.workload["ws-bridge"].email}"
}

resource "google_pubsub_topic_iam_member" "ws_bridge_attach" {
  project = var.project_id
  topic   = google_pubsub_topic.topic["agent-events"].name
  role    = "roles/pubsub.subscriber"
  member  = "serviceAccount:${google_service_account.workload["ws-bridge"].email}"
}

# Secrets: each workload reads exactly the secrets named in its secret_env.
resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each  = local.secret_grants
  project   = var.project_id
  secret_id = google_secret_manager_secret.secret[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.workload[each.value.workload].email}"
}

# Pub/Sub service agent: mints the push identity's OIDC tokens, and forwards undeliverable messages to
# the dead-letter topics (publisher there, subscriber on the source subscriptions). On a new project it may not
# exist yet when the first binding names it ("Service account ... does not exist"): create it first.
# google_project_service_identity would do this but exists only in the google-beta provider; the documented
# gcloud command is idempotent (it returns the agent when it exists). Every binding takes the member from this
# resource's output, so none can be created before it.
resource "terraform_data" "pubsub_service_agent" {
  input = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  provisioner "local-exec" {
    command = "gcloud beta services identity create --service=pubsub.googleapis.com --project=${var.project_id}"
  }

  depends_on = [time_sleep.apis]
}

locals {
  pubsub_agent = terraform_data.pubsub_service_agent.output
}

resource "google_service_account_iam_member" "pubsub_push_token" {
  service_account_id = google_service_account.pubsub_push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# The build account: builds function images (Cloud Functions) and the app image (Cloud Build). The minimum
# a user-specified build account needs: write build logs, read the sources, push to the repository.
resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.build.email}"
}

# Cloud Functions gen2 copies each function's source from our bucket into its own
# gcf-v2-sources-<project number>-<region> bucket and builds from there ("Access to bucket gcf-v2-sources-...
# denied", Cloud Functions troubleshooting page). That bucket is not ours to grant on, so: object viewer at
# project level, conditioned on that bucket (the bucket itself for listing, its objects for reading).
locals {
  gcf_sources_bucket = "gcf-v2-sources-${data.google_project.this.number}-${var.region}"
}

resource "google_project_iam_member" "build_gcf_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = "serviceAccount:${google_service_account.build.email}"
  condition {
    title       = "gcf-v2-sources-only"
    description = "The bucket Cloud Functions gen2 stages function sources in."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${local.gcf_sources_bucket}\")"
  }
}

resource "google_artifact_registry_repository_iam_member" "build_writer" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.build.email}"
}

resource "google_storage_bucket_iam_member" "build_sources" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

# IAM grants take effect after a delay (typically under two minutes): the first build would otherwise run
# seconds after its account's grants and fail with a permission error. Waited for once, and again whenever a
# grant is replaced.
resource "time_sleep" "build_grants" {
  create_duration = "120s"
  triggers = {
    grants = jsonencode(concat(
      [for g in google_project_iam_member.build : g.id],
      [
        google_project_iam_member.build_gcf_sources.id,
        google_artifact_registry_repository_iam_member.build_writer.id,
        google_storage_bucket_iam_member.build_sources.id,
      ],
    ))
  }
}

# Workload images are pulled by the Cloud Run service agent; functions' images by their own agent.
resource "google_artifact_registry_repository_iam_member" "run_agent_reader" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:service-${data.google_project.this.number}@serverless-robot-prod.iam.gserviceaccount.com"
}

# Gemini through Vertex AI (gemini_vertex = true): the worker calls it with its own identity.
resource "google_project_iam_member" "worker_vertex" {
  count   = var.gemini_vertex ? 1 : 0
  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = "serviceAccount:${google_service_account.workload["agent-worker"].email}"
}

# The same delay for what the workloads' own identities need at start: a ws_bridge revision whose database
# login or subscription creation is refused (not propagated yet) fails its startup probe, and the migration job
# would fail its first login. Created early (nothing here waits for Cloud SQL), so on a first apply this wait
# overlaps the instance's creation.
resource "time_sleep" "runtime_grants" {
  create_duration = "120s"
  triggers = {
    grants = jsonencode(concat(
      [for g in google_project_iam_member.telemetry : g.id],
      [for g in google_project_iam_member.sql_client : g.id],
      [for g in google_project_iam_member.sql_instance_user : g.id],
      [for g in google_project_iam_member.firestore_user : g.id],
      [for g in google_project_iam_member.worker_vertex : g.id],
      [for g in google_pubsub_topic_iam_member.publisher : g.id],
      [for g in google_secret_manager_secret_iam_member.accessor : g.id],
      [
        google_project_iam_member.ws_bridge_subscriptions.id,
        google_pubsub_topic_iam_member.ws_bridge_attach.id,
        google_service_account_iam_member.pubsub_push_token.id,
        google_artifact_registry_repository_iam_member.run_agent_reader.id,
      ],
    ))
  }
}
