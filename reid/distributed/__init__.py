"""All Ray (Data, Train, Tune) and MLflow wiring lives here and only here."""
