from django.urls import path

from . import views

app_name = "portals"
urlpatterns = [
    path("", views.grid, name="grid"),
    path("grid/rows/", views.grid_rows, name="grid-rows"),
    path("grid.json", views.grid_json, name="grid-json"),
    path("customers/<int:pk>/", views.customer, name="customer"),
    path("customers/<int:pk>/refresh/", views.customer_refresh, name="customer-refresh"),
    path("customers/sync/", views.sync, name="sync"),
]
