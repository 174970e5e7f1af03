"""One APIRouter per part of the REST contract; create_api includes them in the order of the docs."""
