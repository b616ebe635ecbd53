output "contents" {
  description = "Archive path => file content."
  value       = local.contents
}

output "source_hash" {
  description = "Short content hash (not the zip's: zip metadata must not cause a redeploy); also the image tag."
  value       = substr(sha256(jsonencode(local.contents)), 0, 16)
}

output "requirements" {
  description = "The generated requirements.txt."
  value       = local.requirements
}

output "files" {
  description = "Every path in the archive, sorted."
  value       = sort(keys(local.contents))
}
