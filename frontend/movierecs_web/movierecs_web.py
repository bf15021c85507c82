"""The Reflex app: two pages over the MovieRecs API."""
import reflex as rx

from . import ops, recommendations
from .ops_state import OpsState
from .state import RecState

app = rx.App()
app.add_page(recommendations.page, route="/", title="MovieRecs · Recommendations",
             on_load=RecState.on_load)
app.add_page(ops.page, route="/ops", title="MovieRecs · Ops", on_load=OpsState.refresh)
