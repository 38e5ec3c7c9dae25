from django.contrib.auth.decorators import login_required
from django.shortcuts import render


@login_required
def grid(request):
    return render(request, "portals/grid.html", {})
