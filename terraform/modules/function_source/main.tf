# A zip of a source tree (modules/source_tree), uploaded under a content-addressed name so that a deployment
# changes exactly when a file in it changes.

module "tree" {
  source          = "../source_tree"
  repo_root       = var.repo_root
  include_dirs    = var.include_dirs
  include_files   = var.include_files
  extensions      = var.extensions
  generated_files = var.generated_files
}

data "archive_file" "source" {
  type        = "zip"
  output_path = "${path.root}/.build/${var.name}-${module.tree.source_hash}.zip"

  dynamic "source" {
    for_each = module.tree.contents
    content {
      filename = source.key
      content  = source.value
    }
  }
}

resource "google_storage_bucket_object" "source" {
  name   = "${var.name}-${module.tree.source_hash}.zip"
  bucket = var.bucket
  source = data.archive_file.source.output_path
}
