# One global external HTTPS load balancer: auth., api., ws. go to their serverless backends, app. to the
# static web client in a bucket. The DNS records to create are in the dns_records output (or created here
# when a Cloud DNS zone is given).

locals {
  web_dir   = "${local.repo_root}/${var.web_root}"
  web_files = fileexists("${local.web_dir}/index.html") ? fileset(local.web_dir, "**") : toset([])
  mime_types = {
    html = "text/html; charset=utf-8"
    css  = "text/css"
    js   = "text/javascript"
    json = "application/json"
    svg  = "image/svg+xml"
    png  = "image/png"
    ico  = "image/x-icon"
    txt  = "text/plain; charset=utf-8"
  }
}

resource "google_storage_bucket" "web" {
  # checkov:skip=CKV_GCP_62: public static files of the web client; the load balancer's request logs already record every access.
  # checkov:skip=CKV_GCP_114: this bucket serves the public web client through the load balancer, so public access cannot be prevented; it holds nothing else.
  # checkov:skip=CKV_GCP_78: the bucket is a deployment target rebuilt from the repository on every apply; git is its history.
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name_prefix}-web"
  location                    = var.region
  uniform_bucket_level_access = true
  force_destroy               = true
  labels                      = local.labels
  website {
    main_page_suffix = "index.html"
    not_found_page   = "index.html"
  }
  depends_on = [time_sleep.apis]
}

resource "google_storage_bucket_iam_member" "web_public" {
  # checkov:skip=CKV_GCP_28: the web client is public by nature (HTML, JS, CSS); the bucket holds nothing else.
  bucket = google_storage_bucket.web.name
  role   = "roles/storage.objectViewer"
  member = "allUsers"
}

resource "google_storage_bucket_object" "web" {
  for_each     = local.web_files
  bucket       = google_storage_bucket.web.name
  name         = each.value
  source       = "${local.web_dir}/${each.value}"
  content_type = lookup(local.mime_types, lower(try(regex("\\.([A-Za-z0-9]+)$", each.value)[0], "")), "application/octet-stream")
}

module "lb" {
  source     = "../serverless_lb"
  project_id = var.project_id
  name       = var.name_prefix
  region     = var.region

  serverless_backends = {
    auth = { hosts = [local.hosts.auth], cloud_run_service = module.function["auth"].name }
    api  = { hosts = [local.hosts.api, local.hosts.ingest], cloud_run_service = module.function["agent-api"].name }
    ws   = { hosts = [local.hosts.ws], cloud_run_service = google_cloud_run_v2_service.ws_bridge.name }
  }
  bucket_backends = {
    app = { hosts = [local.hosts.app], bucket = google_storage_bucket.web.name }
  }
  default_backend = "app"
  depends_on      = [time_sleep.apis]
}

resource "google_dns_record_set" "hosts" {
  for_each     = var.dns_managed_zone == "" ? {} : local.hosts
  project      = var.project_id
  managed_zone = var.dns_managed_zone
  name         = "${each.value}."
  type         = "A"
  ttl          = 300
  rrdatas      = [module.lb.ip_address]
}
