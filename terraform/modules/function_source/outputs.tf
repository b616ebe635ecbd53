output "bucket" {
  description = "Bucket holding the archive."
  value       = google_storage_bucket_object.source.bucket
}

output "object" {
  description = "Object name of the archive (changes whenever a file in it changes)."
  value       = google_storage_bucket_object.source.name
}

output "source_hash" {
  description = "Short content hash of the archive; also used as the image tag."
  value       = module.tree.source_hash
}

output "files" {
  description = "Every file path in the archive."
  value       = module.tree.files
}
