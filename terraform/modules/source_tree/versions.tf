terraform {
  # No provider: this module only reads files, so it can be evaluated offline (tests/terraform does).
  required_version = ">= 1.11"
}
