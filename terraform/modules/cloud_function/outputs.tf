output "name" {
  description = "Function name (= its Cloud Run service name)."
  value       = google_cloudfunctions2_function.this.name
}

output "uri" {
  description = "The function's own https URL (reachable only as its ingress setting allows)."
  value       = google_cloudfunctions2_function.this.service_config[0].uri
}
