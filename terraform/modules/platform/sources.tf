# Deployable sources, built by Terraform from this repository: each function's archive holds its own folder,
# shared/ and a generated root main.py that re-exports the entry point (imports stay rooted at the repo root,
# exactly as locally). The app image (ws_bridge service, migration and rollup jobs) is built by Cloud Build
# from an archive of shared/ and functions/ plus terraform/image/Dockerfile.

locals {
  # Function key => where its code lives and what the root main.py exports.
  functions = {
    auth = {
      dir            = "functions/auth"
      module         = "functions.auth.main"
      entry_point    = "auth"
      signature_type = "http"
    }
    "agent-api" = {
      dir            = "functions/agent"
      module         = "functions.agent.main"
      entry_point    = "agent_api"
      signature_type = "http"
    }
    "agent-worker" = {
      dir            = "functions/agent"
      module         = "functions.agent.main"
      entry_point    = "agent_worker"
      signature_type = "cloudevent"
    }
  }

  # Container workloads of the app image: key => the command the container runs.
  containers = {
    # Listen on every interface: the default (127.0.0.1) is for local runs.
    "ws-bridge" = ["python", "-m", "functions.ws_bridge", "--host", "0.0.0.0"]
    migrate     = ["sh", "-c", "python -m shared.db.migrate && python -m shared.deploy grant-db"]
    rollup      = ["python", "-m", "functions.agent.rollup_job"]
  }
}

resource "google_storage_bucket" "sources" {
  # checkov:skip=CKV_GCP_62: holds build inputs only (content-addressed source archives); Cloud Audit Logs record who reads them.
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name_prefix}-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection
  labels                      = local.labels
  versioning {
    enabled = true
  }
  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      num_newer_versions = 3
    }
    action {
      type = "Delete"
    }
  }
  depends_on = [time_sleep.apis]
}

resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84: Google-managed encryption for images built from this public source; CMEK adds a KMS key per environment without a requirement for it.
  project       = var.project_id
  location      = var.region
  repository_id = "${var.name_prefix}-images"
  format        = "DOCKER"
  labels        = local.labels
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }
  depends_on = [time_sleep.apis]
}

module "function_source" {
  source          = "../function_source"
  for_each        = local.functions
  name            = each.key
  repo_root       = local.repo_root
  include_dirs    = [each.value.dir, "shared"]
  include_files   = ["functions/__init__.py"]
  bucket          = google_storage_bucket.sources.name
  generated_files = { "main.py" = "from ${each.value.module} import ${each.value.entry_point}  # noqa: F401\n" }
}

module "app_source" {
  source          = "../function_source"
  name            = "app-image"
  repo_root       = local.repo_root
  include_dirs    = ["functions", "shared"]
  include_files   = []
  bucket          = google_storage_bucket.sources.name
  generated_files = { "Dockerfile" = file("${local.repo_root}/terraform/image/Dockerfile") }
}

locals {
  built_image = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}/app:${module.app_source.source_hash}"
  app_image   = var.app_image != "" ? var.app_image : local.built_image
}

# Cloud Build has no "build once" resource: run it from the apply, keyed by the source hash, so an
# unchanged tree is never rebuilt. Needs gcloud on the machine running terraform (docs/DEPLOY.md).
resource "terraform_data" "app_image" {
  count            = var.app_image == "" ? 1 : 0
  triggers_replace = [module.app_source.source_hash]

  provisioner "local-exec" {
    command = join(" ", [
      "gcloud builds submit",
      "gs://${module.app_source.bucket}/${module.app_source.object}",
      "--project=${var.project_id}",
      "--region=${var.region}",
      "--config=${local.repo_root}/terraform/image/cloudbuild.yaml",
      "--service-account=${google_service_account.build.id}",
      "--substitutions=_IMAGE=${local.built_image}",
    ])
  }

  # `gcloud builds submit` seconds after the grants would be refused: wait until they are in effect.
  depends_on = [time_sleep.build_grants]
}
