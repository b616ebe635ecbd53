variable "project_id" {
  description = "Google Cloud project id (one project per environment is recommended)."
  type        = string
}

variable "region" {
  description = "Region of every regional resource, e.g. europe-west1."
  type        = string
}

variable "environment" {
  description = "staging or production: the NETRA_ENV every service runs with."
  type        = string
  validation {
    condition     = contains(["staging", "production"], var.environment)
    error_message = "environment must be staging or production."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name, e.g. netra."
  type        = string
  default     = "netra"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.name_prefix))
    error_message = "name_prefix: 2-15 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "domain" {
  description = "Registered domain, e.g. example.com."
  type        = string
}

variable "hostname_suffix" {
  description = "Suffix of the four host names: staging.example.com gives auth.staging.example.com, api., ws., app."
  type        = string
}

variable "sign_in_providers" {
  description = "Sign-in providers turned on: any of google, github. (Development login is refused outside development.)"
  type        = list(string)
  default     = ["google"]
  validation {
    condition     = alltrue([for p in var.sign_in_providers : contains(["google", "github"], p)])
    error_message = "sign_in_providers may hold google and github only."
  }
}

variable "oauth_client_ids" {
  description = "Public OAuth client ids per provider (the secrets go to Secret Manager), e.g. { google = \"123.apps.googleusercontent.com\" }."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for p in var.sign_in_providers : try(var.oauth_client_ids[p] != "", false)])
    error_message = "oauth_client_ids needs the client id of every provider in sign_in_providers."
  }
}

variable "llm_models" {
  description = "LLM_MODELS of the worker: ordered fallback chain provider:model (providers gemini, openai), e.g. gemini:gemini-2.5-flash,openai:gpt-4o-mini."
  type        = string
  default     = "gemini:gemini-2.5-flash"
  validation {
    condition     = alltrue([for m in split(",", var.llm_models) : contains(["gemini", "openai"], trimspace(split(":", m)[0]))])
    error_message = "llm_models: comma-separated provider:model with provider gemini or openai (mock is for tests)."
  }
}

variable "gemini_vertex" {
  description = "true: the worker calls Gemini through Vertex AI with its service account (no API key secret)."
  type        = bool
  default     = false
}

variable "gemini_location" {
  description = "Vertex AI region for Gemini when gemini_vertex is true."
  type        = string
  default     = "us-central1"
}

variable "min_instances" {
  description = "Warm instances per service. 0 scales to zero; then a Cloud Scheduler job pings /health/ready instead."
  type = object({
    auth         = number
    agent_api    = number
    agent_worker = number
    ws_bridge    = number
  })
}

variable "max_instances" {
  description = "Instance caps per service; max x DB_POOL_SIZE summed over services must stay under db_max_connections."
  type = object({
    auth         = number
    agent_api    = number
    agent_worker = number
    ws_bridge    = number
  })
}

variable "db_pool_size" {
  description = "DB_POOL_SIZE: connections kept per instance."
  type        = number
  default     = 4
}

variable "ws_concurrency" {
  description = "WebSockets one ws_bridge instance holds; each socket is one long request."
  type        = number
  default     = 250
}

variable "db_tier" {
  description = "Cloud SQL machine tier, e.g. db-custom-1-3840."
  type        = string
}

variable "db_disk_gb" {
  description = "Initial Cloud SQL disk size in GB (grows automatically)."
  type        = number
  default     = 10
}

variable "db_availability_type" {
  description = "ZONAL or REGIONAL (high availability)."
  type        = string
  default     = "ZONAL"
}

variable "db_max_connections" {
  description = "PostgreSQL max_connections."
  type        = number
  default     = 200
}

variable "db_backup_retention" {
  description = "Automated backups kept."
  type        = number
  default     = 14
}

variable "db_password_version" {
  description = "Bump to generate and store a new password for the migration user (write-only, never in state)."
  type        = number
  default     = 1
}

variable "deletion_protection" {
  description = "Protect Cloud SQL, Firestore and the ws_bridge service from deletion (true in production)."
  type        = bool
}

variable "firestore_location" {
  description = "Firestore location, e.g. eur3 or nam5 (multi-region) or a region."
  type        = string
}

variable "firestore_collection_prefix" {
  description = "FIRESTORE_COLLECTION_PREFIX; empty when the environment has its own project."
  type        = string
  default     = ""
}

variable "release_on_apply" {
  description = "true: an apply that creates a new revision starts its canary release (the netra-release job, delivery.tf); false: revisions are created without traffic and an operator starts each release (`make release-start`)."
  type        = bool
  default     = true
}

variable "app_image" {
  description = "Prebuilt image for ws_bridge and the jobs. Empty: built from this repo with Cloud Build during apply (needs gcloud)."
  type        = string
  default     = ""
}

variable "warmup_schedule" {
  description = "Cron schedule of the warm-up pings to services running with min_instances = 0."
  type        = string
  default     = "*/5 * * * *"
}

variable "rollup_schedule" {
  description = "Cron schedule of the usage rollup job."
  type        = string
  default     = "17 * * * *"
}

variable "alert_emails" {
  description = "E-mail addresses notified by the alert policies."
  type        = list(string)
  default     = []
}

variable "cold_start_alert_ms" {
  description = "Alert when the 95th percentile of startup_ms (the startup manager's 'startup complete' log line) exceeds this."
  type        = number
  default     = 8000
}

variable "dns_managed_zone" {
  description = "Cloud DNS managed zone to create the A records in; empty to create them elsewhere (see the dns_records output)."
  type        = string
  default     = ""
}

variable "web_root" {
  description = "Folder (relative to the repo root) whose files are served on app.<suffix>: the chat page ws_bridge also serves at /."
  type        = string
  default     = "functions/ws_bridge/static"
}

variable "log_level" {
  description = "LOG_LEVEL of every service."
  type        = string
  default     = "INFO"
}
