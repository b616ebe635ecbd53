# Every API the platform uses. Left enabled on destroy: disabling an API can break resources outside Terraform.

locals {
  apis = concat(var.gemini_vertex ? ["aiplatform.googleapis.com"] : [], [
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "dns.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
    "vpcaccess.googleapis.com",
  ])
}

resource "google_project_service" "api" {
  for_each           = toset(local.apis)
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# An API answers "not enabled" or "permission denied" for a while after it is enabled (provider issues 3151,
# 11023): everything that calls one waits for this, not for the enablement itself. Replaced (so waited for
# again) only when the list of APIs changes.
resource "time_sleep" "apis" {
  create_duration = "90s"
  triggers = {
    apis = join(",", sort(local.apis))
  }
  depends_on = [google_project_service.api]
}

# Read through the Resource Manager API, which DEPLOY step 0 enables: no depends_on, so that the project
# number is known at plan time (a deferred read would plan replacements of every binding that names it).
data "google_project" "this" {
  project_id = var.project_id
}
