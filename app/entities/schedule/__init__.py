"""See models.py, schemas.py and repository.py."""
