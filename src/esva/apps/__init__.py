"""What users run: thin layers over the models, one path from a media file to an answer.

``inference``  decode once, extract once, run the model, measure the offset from the same streams
``predict``    ``esva predict``: emotion, probabilities, timeline, audio-video offset
``explain``    ``esva explain``: emotion and explanation from the language-model path
``align``      ``esva align``: how far voice and face are out of step
``demo``       ``esva demo``: the synthetic end-to-end run with the paper's ablations
``pipeline``   the Python API, ``esva.pipeline("emotion" | "align" | "explain")``: the apps above,
               loaded once, on a path, bytes or arrays
``results``    the typed results the pipelines return and the CLI prints (``to_dict``)
"""
