-- Runs once, when the postgres volume is first created: the sweep's Optuna study gets its own
-- database (its tables, alembic_version among them, would collide with MLflow's in one database).
CREATE DATABASE optuna OWNER mlflow;
