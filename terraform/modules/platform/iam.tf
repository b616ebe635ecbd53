# One service account per workload, with roles scoped to the exact secrets, topics, database instance and
# Firestore database it uses (see local.workloads and local.secret_env). Helper identities: the Pub/Sub push
# invoker, the Cloud Scheduler caller and the build account.

resource "google_service_account" "workload" {
  for_each     = local.workloads
  project      = var.project_id
  account_id   = "${var.name_prefix}-${each.key}"
  display_name = "Netra ${each.key} (${var.environment})"
  depends_on   = [google_project_service.api]
}

resource "google_service_account" "pubsub_push" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-pubsub-push"
  display_name = "Pub/Sub push identity (invokes the agent worker)"
  depends_on   = [google_project_service.api]
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "Cloud Scheduler identity (warm-up pings, rollup job)"
  depends_on   = [google_project_service.api]
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "Builds function images and the app image"
  depends_on   = [google_project_service.api]
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
# the dead-letter topics (publisher there, subscriber on the source subscriptions).
locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_service_account_iam_member" "pubsub_push_token" {
  service_account_id = google_service_account.pubsub_push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# The build account: builds function images (Cloud Functions) and the app image (Cloud Build). The minimum
# a user-specified build account needs: write build logs, read the sources bucket, push to the repository.
resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.build.email}"
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
