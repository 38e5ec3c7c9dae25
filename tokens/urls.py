from django.urls import path

from . import views

app_name = "tokens"
urlpatterns = [
    path("credentials/", views.credential_list, name="list"),
    path("credentials/oauth/connect", views.oauth_connect, name="oauth-connect"),
    path("credentials/msp/import", views.msp_import, name="msp-import"),
    path("credentials/<int:pk>/revoke", views.credential_revoke, name="revoke"),
    path("credentials/<int:pk>/disconnect", views.credential_revoke, name="disconnect"),
    path("credentials/<int:pk>/forget", views.credential_forget, name="forget"),
    path("credentials/<int:pk>/test", views.credential_test, name="test"),
    path("customers/<int:pk>/credentials", views.customer_credentials, name="customer"),
    path("customers/<int:pk>/credentials/new", views.credential_create, name="create"),
    path("customers/<int:pk>/credentials/import", views.credential_import, name="import"),
]
