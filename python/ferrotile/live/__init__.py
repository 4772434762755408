"""The live view's page and scripts (plain HTML, CSS and JavaScript modules, no build step),
served by :mod:`ferrotile.api.live`."""
