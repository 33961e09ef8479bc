"""The execute flow: intake, one execution's steps, rendering, templates and their preview."""
