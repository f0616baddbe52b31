"""The shipped search spaces (YAML), loadable as pkg://NAME; the repository links them as tune_spaces/."""
