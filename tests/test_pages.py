import pytest


@pytest.mark.django_db
def test_login_page_renders(client):
    response = client.get("/login/")
    assert response.status_code == 200
    assert b'name="password"' in response.content


@pytest.mark.django_db
def test_grid_requires_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.django_db
def test_admin_login_works(client, django_user_model):
    django_user_model.objects.create_superuser("boss", password="a-long-test-pass-123")
    # A real login through the admin's form (django-axes needs the request; client.login()
    # has none).
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "boss", "password": "a-long-test-pass-123", "next": "/admin/"},
    )
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
