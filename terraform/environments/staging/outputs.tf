output "urls" {
  description = "Public URL of every service."
  value       = module.netra.urls
}

output "health_urls" {
  description = "Readiness endpoints to check after a deploy."
  value       = module.netra.health_urls
}

output "load_balancer_ip" {
  description = "IPv4 address the host names point to."
  value       = module.netra.load_balancer_ip
}

output "dns_records" {
  description = "DNS records to create."
  value       = module.netra.dns_records
}

output "certificate" {
  description = "Google-managed certificate name."
  value       = module.netra.certificate
}

output "cloud_run_services" {
  description = "Cloud Run service of each workload (for python -m shared.deploy)."
  value       = module.netra.cloud_run_services
}

output "function_urls" {
  description = "Direct URLs of the functions."
  value       = module.netra.function_urls
}

output "jobs" {
  description = "Cloud Run jobs."
  value       = module.netra.jobs
}

output "secrets_to_fill" {
  description = "Secrets whose values you add."
  value       = module.netra.secrets_to_fill
}

output "sql_instance" {
  description = "Cloud SQL connection name."
  value       = module.netra.sql_instance
}

output "service_accounts" {
  description = "Service account of every workload."
  value       = module.netra.service_accounts
}
