"""ichvol: intracranial hemorrhage segmentation and volumetry on head CT, integrated with PACS."""

__version__ = "0.1.0"
