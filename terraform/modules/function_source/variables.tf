variable "name" {
  description = "Archive name, e.g. auth; the uploaded object is <name>-<content hash>.zip."
  type        = string
}

variable "repo_root" {
  description = "Path of the repository root (the folder holding pyproject.toml, shared/ and functions/)."
  type        = string
}

variable "include_dirs" {
  description = "Folders copied from the repo root with their layout kept, e.g. [\"functions/auth\", \"shared\"]."
  type        = list(string)
}

variable "include_files" {
  description = "Single files copied from the repo root, e.g. [\"functions/__init__.py\"]."
  type        = list(string)
  default     = []
}

variable "extensions" {
  description = "File extensions taken from include_dirs. Text only: archive_file source blocks carry strings."
  type        = list(string)
  default     = ["py", "sql", "json", "html", "css", "js", "yaml", "txt"]
}

variable "generated_files" {
  description = "Extra files written at the archive root: file name => content (e.g. the main.py shim)."
  type        = map(string)
  default     = {}
}

variable "bucket" {
  description = "GCS bucket receiving the archive."
  type        = string
}
