"""The Reflex app: two pages over the MovieRecs API."""
import reflex as rx

from . import ops, recommendations
from .state import OpsState

app = rx.App()
app.add_page(recommendations.page, route="/", title="MovieRecs · Recommendations")
app.add_page(ops.page, route="/ops", title="MovieRecs · Ops", on_load=OpsState.refresh)
