"""Annotation assist: label suggestions for human labelers and a store of their decisions.

`app.build_assist_app` serves suggestions, the review page and the decisions API;
`labelstudio_app.build_labelstudio_app` serves the Label Studio ML backend API.
Both write to one `store.Store`, which `report.build_report` summarises.
"""
