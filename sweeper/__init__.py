"""sweeper: one YAML spec per ablation table -> MLflow runs -> the report table."""
