# One definition of "what a deployable source tree is": the folders of one service plus shared/, generated
# files (a root main.py shim that keeps imports rooted at the repo root, as locally), and a requirements.txt
# generated from the [project] dependencies of pyproject.toml.

locals {
  pyproject = file("${var.repo_root}/pyproject.toml")
  # The [project] dependencies list: every quoted string between `dependencies = [` and the closing bracket
  # alone on its line (extras such as [pg8000] sit inside quotes and do not end the list).
  dependency_block = regex("(?s)\\ndependencies = \\[\\n(.*?)\\n\\]", local.pyproject)[0]
  requirements     = join("\n", concat([for m in regexall("\"([^\"]+)\"", local.dependency_block) : m[0]], [""]))

  tree_files = toset(concat(var.include_files, flatten([
    for dir in var.include_dirs : [
      for f in fileset(var.repo_root, "${dir}/**") : f
      if !strcontains(f, "__pycache__") && contains(var.extensions, try(regex("\\.([A-Za-z0-9]+)$", f)[0], ""))
    ]
  ])))

  contents = merge(
    { for f in local.tree_files : f => file("${var.repo_root}/${f}") },
    { "requirements.txt" = local.requirements },
    var.generated_files,
  )
}
