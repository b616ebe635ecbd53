variable "project_id" {
  description = "Project id."
  type        = string
}

variable "region" {
  description = "Region of the function."
  type        = string
}

variable "name" {
  description = "Function name (also the name of its Cloud Run service)."
  type        = string
}

variable "description" {
  description = "What the function does."
  type        = string
}

variable "entry_point" {
  description = "Python callable in the root main.py shim, e.g. auth."
  type        = string
}

variable "signature_type" {
  description = "http or cloudevent (a cloudevent function is pushed to by a Pub/Sub push subscription)."
  type        = string
  default     = "http"
  validation {
    condition     = contains(["http", "cloudevent"], var.signature_type)
    error_message = "signature_type must be http or cloudevent."
  }
}

variable "runtime" {
  description = "Cloud Functions runtime."
  type        = string
  default     = "python311"
}

variable "source_bucket" {
  description = "Bucket of the source archive."
  type        = string
}

variable "source_object" {
  description = "Object of the source archive."
  type        = string
}

variable "service_account_email" {
  description = "Runtime identity of the function."
  type        = string
}

variable "build_service_account" {
  description = "Cloud Build identity, projects/P/serviceAccounts/EMAIL."
  type        = string
}

variable "docker_repository" {
  description = "Artifact Registry repository for the built function image, projects/P/locations/R/repositories/NAME."
  type        = string
}

variable "environment" {
  description = "Plain environment variables (never secrets)."
  type        = map(string)
  default     = {}
}

variable "secret_environment" {
  description = "Environment variable name => Secret Manager secret id, injected from the secret's latest version."
  type        = map(string)
  default     = {}
}

variable "min_instances" {
  description = "Instances kept warm (0 lets it scale to zero)."
  type        = number
  default     = 0
}

variable "max_instances" {
  description = "Upper bound on instances (also bounds database connections: max x DB_POOL_SIZE)."
  type        = number
  default     = 10
}

variable "memory" {
  description = "Memory per instance, e.g. 512Mi."
  type        = string
  default     = "512Mi"
}

variable "cpu" {
  description = "vCPUs per instance; concurrency above 1 needs at least 1."
  type        = string
  default     = "1"
}

variable "concurrency" {
  description = "Requests one instance serves at once (the framework's THREADS is set to match)."
  type        = number
  default     = 8
}

variable "timeout_seconds" {
  description = "Request timeout."
  type        = number
  default     = 60
}

variable "ingress" {
  description = "ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  type        = string
  default     = "ALLOW_INTERNAL_AND_GCLB"
}

variable "vpc_connector" {
  description = "Serverless VPC Access connector id (private IP of Cloud SQL)."
  type        = string
}

variable "all_traffic_on_latest_revision" {
  description = "true: a new revision takes all traffic once ready; false: traffic moves with python -m shared.deploy promote."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels for the function."
  type        = map(string)
  default     = {}
}
