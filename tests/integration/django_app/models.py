from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=100, unique=True)
    qty = models.IntegerField(default=0)
    note = models.TextField(blank=True, default="")
    data = models.BinaryField(null=True)

    class Meta:
        app_label = "django_app"
        db_table = "django_item"
