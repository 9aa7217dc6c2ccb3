"""REST front ends beside the page: the AUTOMATIC1111 API (`/sdapi/v1`) and the OpenAI images API (`/v1/images`).

Thin over the same core as the page (t2i/studio.py): `t2i.api.server.api_app(studio)` is a FastAPI app with both;
app.py mounts the Gradio page on it (`python app.py --api`, T2I_API=1). Nothing here imports gradio.
"""
