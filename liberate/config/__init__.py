"""The run file: loading, validation and the models every connector extends."""
