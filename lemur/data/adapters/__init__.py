"""Adapters: public datasets in their raw formats -> lemur's schema, one module each.

=====================  ==========================================  ==================================
module                 dataset                                     command
=====================  ==========================================  ==================================
``mind``               MIND (Microsoft News), impressions          ``lemur data mind``
``microlens``          MicroLens-50k/100k, titles + cover images   ``lemur data microlens``
``kuaisar``            KuaiSAR, search + recommendation logs       ``lemur data kuaisar``
``amazon_reviews``     Amazon Reviews 2023, reviews + item meta    ``lemur data amazon-reviews``
=====================  ==========================================  ==================================

Each module exposes ``RESOURCES`` (what ``--download`` fetches: resumable, checksummed, with a
progress bar; see :mod:`lemur.data.download`), ``convert(raw, out, ...) -> summary`` and the
CLI hooks ``COMMAND``, ``HELP``, ``add_arguments(parser)``, ``main(args)``. Quirks of the raw
data (missing fields, empty histories, broken image links, unlabeled rows) are counted in the
summary printed at the end and saved as ``<out>/<dataset>.json``. ``docs/datasets.md`` gives
the field-by-field mapping of each.
"""
