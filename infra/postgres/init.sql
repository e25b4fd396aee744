-- One Postgres for the team stack: MLflow's tracking/registry store and Prefect's API database.
CREATE DATABASE prefect;
