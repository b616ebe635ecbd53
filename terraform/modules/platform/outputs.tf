output "urls" {
  description = "Public URL of every service."
  value       = local.urls
}

output "health_urls" {
  description = "Readiness endpoints to check after a deploy."
  value       = { for k in ["auth", "api", "ws"] : k => "${local.urls[k]}/health/ready" }
}

output "load_balancer_ip" {
  description = "IPv4 address every host name must point to."
  value       = module.lb.ip_address
}

output "dns_records" {
  description = "DNS records to create at your DNS provider (done for you when dns_managed_zone is set)."
  value       = module.lb.dns_records
}

output "certificate" {
  description = "Google-managed certificate; provisioning finishes (ACTIVE) once the DNS records resolve."
  value       = module.lb.certificate
}

output "function_urls" {
  description = "Direct run.app URLs of the functions (reachable only from inside the project / the load balancer)."
  value       = { for k, m in module.function : k => m.uri }
}

output "cloud_run_services" {
  description = "Cloud Run service behind each workload, for python -m shared.deploy --service NAME."
  value = merge(
    { for k, m in module.function : k => m.name },
    { "ws-bridge" = google_cloud_run_v2_service.ws_bridge.name },
  )
}

output "jobs" {
  description = "Cloud Run jobs (gcloud run jobs execute NAME --region REGION --wait)."
  value       = { for k, j in google_cloud_run_v2_job.job : k => j.name }
}

output "secrets_to_fill" {
  description = "Secret Manager secrets whose values an operator adds (gcloud secrets versions add ID --data-file=-)."
  value       = sort([for k, s in google_secret_manager_secret.secret : s.secret_id if k != "db-migrator-password"])
}

output "sql_instance" {
  description = "Cloud SQL instance connection name."
  value       = google_sql_database_instance.main.connection_name
}

output "service_accounts" {
  description = "Service account of every workload."
  value       = { for k, sa in google_service_account.workload : k => sa.email }
}

output "app_image" {
  description = "Image running ws_bridge and the jobs."
  value       = local.app_image
}
