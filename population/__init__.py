"""The National Population Database: models, migrations, life events, change log and the synthetic population."""
