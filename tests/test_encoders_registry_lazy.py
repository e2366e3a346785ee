"""create_encoder imports only the module of the encoder asked for (start-up time per worker)."""

import subprocess
import sys

from esva.encoders.registry import _ENCODER_MODULES, _MODULE_OF, list_encoders


def test_every_listed_encoder_has_its_module_recorded():
    names = set(list_encoders())
    assert names == set(_MODULE_OF), names ^ set(_MODULE_OF)
    assert set(_MODULE_OF.values()) == set(_ENCODER_MODULES)


def test_creating_prosody_does_not_import_the_transformers_encoders():
    code = (
        "import sys\n"
        "from esva.encoders import create_encoder\n"
        "create_encoder('prosody')\n"
        "print(sorted(m for m in sys.modules if m.startswith('esva.encoders.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = out.stdout
    assert "esva.encoders.prosody" in loaded
    assert "esva.encoders.ssl_audio" not in loaded and "esva.encoders.vision" not in loaded


def test_encoder_names_match_the_registered_ones():
    from esva.encoders import encoder_names

    # The static name table (read without importing any encoder) is exactly what registers.
    assert encoder_names() == set(list_encoders())
