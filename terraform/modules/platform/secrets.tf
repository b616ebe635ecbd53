# Secret Manager secrets. Terraform creates the secrets and their IAM, never their values: operators add
# versions with `gcloud secrets versions add` (docs/DEPLOY.md). The one exception is the migration user's
# database password, generated here as an ephemeral value and written with write-only arguments to both
# Cloud SQL and Secret Manager, so it never appears in the Terraform state or plan.

locals {
  llm_providers = distinct([for m in split(",", var.llm_models) : trimspace(split(":", m)[0])])

  # secret key => whether this environment uses it. Secret ids are "<prefix>-<key>".
  secrets = {
    "auth-signing-keys"          = { enabled = true, description = "Token signing keyset JSON {active_kid, keys} (private keys), read by auth at run time" }
    "google-oauth-client-secret" = { enabled = contains(var.sign_in_providers, "google"), description = "Google OAuth client secret" }
    "github-oauth-client-secret" = { enabled = contains(var.sign_in_providers, "github"), description = "GitHub OAuth app client secret" }
    "gemini-api-key"             = { enabled = contains(local.llm_providers, "gemini") && !var.gemini_vertex, description = "Gemini Developer API key" }
    "openai-api-key"             = { enabled = contains(local.llm_providers, "openai"), description = "OpenAI API key" }
    "db-migrator-password"       = { enabled = true, description = "Password of the database user the migration job logs in as" }
  }
  enabled_secrets = { for k, s in local.secrets : k => s if s.enabled }

  # Secrets actually injected, per workload (entries for disabled secrets are dropped).
  workload_secrets = {
    for w, m in local.secret_env : w => { for env_name, key in m : env_name => key if contains(keys(local.enabled_secrets), key) }
  }
  secret_grants = merge(
    merge([
      for w, m in local.workload_secrets : { for env_name, key in m : "${w}|${key}" => { workload = w, secret = key } }
    ]...),
    merge([
      for w, keys in local.secret_readers : { for key in keys : "${w}|${key}" => { workload = w, secret = key } }
    ]...),
  )
  secret_resource = { for k, s in google_secret_manager_secret.secret : k => s.id }
}

resource "google_secret_manager_secret" "secret" {
  for_each  = local.enabled_secrets
  project   = var.project_id
  secret_id = "${var.name_prefix}-${each.key}"
  labels    = local.labels
  annotations = {
    description = each.value.description
  }
  replication {
    auto {}
  }
  depends_on = [time_sleep.apis]
}

ephemeral "random_password" "db_migrator" {
  length           = 32
  special          = true
  override_special = "-_.~"
}

# The ephemeral password is generated anew in every run, so the user and this version must be written in the
# same run. This version is written right after the SQL user (depends_on), not minutes before it (the instance
# takes ~10 minutes): an apply that fails in between would otherwise have stored a password that the next
# apply never gives the user. After a failed first apply whose migration then reports "password authentication
# failed" for the migrator, bump db_password_version: both are rewritten, in this order (docs/DEPLOY.md).
resource "google_secret_manager_secret_version" "db_migrator_password" {
  secret                 = google_secret_manager_secret.secret["db-migrator-password"].id
  secret_data_wo         = ephemeral.random_password.db_migrator.result
  secret_data_wo_version = var.db_password_version
  depends_on             = [google_sql_user.migrator]
}
