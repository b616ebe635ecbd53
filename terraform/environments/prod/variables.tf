variable "project_id" {
  description = "Google Cloud project of this environment."
  type        = string
}

variable "region" {
  description = "Region, e.g. europe-west1."
  type        = string
  default     = "europe-west1"
}

variable "domain" {
  description = "Your domain; hosts are auth.<domain>, api.<domain>, ws.<domain>, app.<domain>."
  type        = string
}

variable "sign_in_providers" {
  description = "Sign-in providers turned on: google, github."
  type        = list(string)
  default     = ["google"]
}

variable "oauth_client_ids" {
  description = "Public OAuth client id per provider."
  type        = map(string)
  default     = {}
}

variable "llm_models" {
  description = "Ordered LLM fallback chain provider:model (gemini, openai)."
  type        = string
  default     = "gemini:gemini-2.5-flash"
}

variable "gemini_vertex" {
  description = "Call Gemini through Vertex AI with the worker's service account instead of an API key."
  type        = bool
  default     = false
}

variable "firestore_location" {
  description = "Firestore location (eur3, nam5 or a region)."
  type        = string
  default     = "eur3"
}

variable "db_tier" {
  description = "Cloud SQL tier."
  type        = string
  default     = "db-custom-2-7680"
}

variable "min_instances" {
  description = "Warm instances per service; 0 = scale to zero with a warm-up ping instead."
  type = object({
    auth         = number
    agent_api    = number
    agent_worker = number
    ws_bridge    = number
  })
  default = { auth = 1, agent_api = 1, agent_worker = 1, ws_bridge = 2 }
}

variable "max_instances" {
  description = "Instance caps per service."
  type = object({
    auth         = number
    agent_api    = number
    agent_worker = number
    ws_bridge    = number
  })
  default = { auth = 20, agent_api = 20, agent_worker = 10, ws_bridge = 10 }
}

variable "alert_emails" {
  description = "Who gets alerts."
  type        = list(string)
  default     = []
}

variable "dns_managed_zone" {
  description = "Cloud DNS zone to create the A records in (empty: create them at your DNS provider)."
  type        = string
  default     = ""
}

variable "app_image" {
  description = "Prebuilt app image; empty builds it with Cloud Build during apply (needs gcloud)."
  type        = string
  default     = ""
}

variable "db_password_version" {
  description = "Bump (2, 3, ...) to write a new migration-user password to Cloud SQL and Secret Manager: a rotation, or the repair after a first apply that stopped between the two (docs/DEPLOY.md)."
  type        = number
  default     = 1
}
