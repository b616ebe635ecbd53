variable "project_id" {
  description = "Project id."
  type        = string
}

variable "name" {
  description = "Name prefix of every load balancer resource."
  type        = string
}

variable "region" {
  description = "Region of the serverless backends."
  type        = string
}

variable "serverless_backends" {
  description = <<-EOT
    Backend key => { hosts, cloud_run_service } for Cloud Run services and Cloud Functions gen2 (whose
    Cloud Run service has the function's name). Every host gets its own host rule.
  EOT
  type = map(object({
    hosts             = list(string)
    cloud_run_service = string
  }))
}

variable "bucket_backends" {
  description = "Backend key => { hosts, bucket } for static content served from a bucket."
  type = map(object({
    hosts  = list(string)
    bucket = string
  }))
  default = {}
}

variable "default_backend" {
  description = "Key (in serverless_backends or bucket_backends) answering requests for unknown hosts."
  type        = string
}

variable "rate_limit_per_minute" {
  description = "Requests per minute one client IP may send before Cloud Armor answers 429. Generous: ws_bridge calls auth and the API through the load balancer from shared egress addresses."
  type        = number
  default     = 3000
}
