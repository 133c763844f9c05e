from django.urls import path

from newsletter import views

urlpatterns = [
    path("", views.newsletter_page, name="newsletter"),
    path("campaigns/<int:campaign_id>/", views.campaign_page, name="campaign"),
]
