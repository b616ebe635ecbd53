# Staging: scale to zero where a warm-up ping is cheaper, new revisions take traffic once ready, no
# deletion protection (tear down with terraform destroy).
module "netra" {
  source = "../../modules/platform"

  project_id        = var.project_id
  region            = var.region
  environment       = "staging"
  domain            = var.domain
  hostname_suffix   = "staging.${var.domain}"
  sign_in_providers = var.sign_in_providers
  oauth_client_ids  = var.oauth_client_ids
  llm_models        = var.llm_models
  gemini_vertex     = var.gemini_vertex

  min_instances = var.min_instances
  max_instances = var.max_instances

  db_tier              = var.db_tier
  db_password_version  = var.db_password_version
  db_availability_type = "ZONAL"
  db_backup_retention  = 7
  firestore_location   = var.firestore_location

  deletion_protection = false
  release_on_apply    = true

  alert_emails     = var.alert_emails
  dns_managed_zone = var.dns_managed_zone
  app_image        = var.app_image
}
