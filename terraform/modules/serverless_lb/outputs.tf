output "ip_address" {
  description = "The load balancer's IPv4 address: every host name needs an A record to it."
  value       = google_compute_global_address.lb.address
}

output "hosts" {
  description = "Every host name the certificate and the URL map serve."
  value       = local.all_hosts
}

output "certificate" {
  description = "Name of the Google-managed certificate (ACTIVE once DNS points at the load balancer)."
  value       = google_compute_managed_ssl_certificate.lb.name
}

output "dns_records" {
  description = "DNS records to create: one A record per host."
  value       = [for h in local.all_hosts : { name = "${h}.", type = "A", ttl = 300, value = google_compute_global_address.lb.address }]
}
