# Production: warm instances everywhere, high-availability database, deletion protection on the database,
# Firestore and the ws_bridge service, and traffic moved to a new revision only by
# `python -m shared.deploy promote` after its health check passes.
module "netra" {
  source = "../../modules/platform"

  project_id        = var.project_id
  region            = var.region
  environment       = "production"
  domain            = var.domain
  hostname_suffix   = var.domain
  sign_in_providers = var.sign_in_providers
  oauth_client_ids  = var.oauth_client_ids
  llm_models        = var.llm_models
  gemini_vertex     = var.gemini_vertex

  min_instances = var.min_instances
  max_instances = var.max_instances

  db_tier              = var.db_tier
  db_password_version  = var.db_password_version
  db_availability_type = "REGIONAL"
  db_backup_retention  = 30
  db_max_connections   = 400
  firestore_location   = var.firestore_location

  deletion_protection = true
  release_on_apply    = true

  alert_emails     = var.alert_emails
  dns_managed_zone = var.dns_managed_zone
  app_image        = var.app_image
}
