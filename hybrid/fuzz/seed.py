"""Seed the hybrid fuzz corpora: tokens as the SDKs write them (including a
.NET one with `+` for spaces) for `sas_token`, and the control messages a
listener sends (`response` in each shape the SDKs use, `renewToken`) for
`control_command`. Run from hybrid/fuzz: python3 seed.py"""
import os

SEEDS = {
    "sas_token": [
        "SharedAccessSignature sr=http%3a%2f%2flocalhost%2fhc1&sig=abc%2bdef%3d&se=4000000000&skn=RootManageSharedAccessKey",
        "SharedAccessSignature sig=abc%3D&se=4000000000&skn=rule&sr=https%3A%2F%2Fns.servicebus.windows.net%2Fa%2Fb%2F",
        "SharedAccessSignature sr=http://h/p&sig=x+y&se=1&skn=k",
    ],
    "control_command": [
        '{"response":{"requestId":"954138b9-fb45-44a4-2d1c-df7aa347bce3","statusCode":200,"statusDescription":"OK","responseHeaders":{"Content-Type":"text/plain"},"body":true}}',
        '{"response":{"requestId":"1","statusCode":"404","statusDescription":null,"body":false}}',
        '{"renewToken":{"token":"SharedAccessSignature sr=x&sig=y&se=1&skn=z"}}',
        '{"unknown":{}}',
    ],
    # Frames for listener_session: a kind byte (opcode index, 0x80 = FIN)
    # and a length byte before each payload.
    "listener_session": [
        "\x80\x47" + '{"renewToken":{"token":"SharedAccessSignature sr=x&sig=y&se=1&skn=z"}}',
        "\x80\x4d" + '{"response":{"requestId":"1","statusCode":200,"body":true}}' + "\x01\x02hi\x82\x01!",
        "\x80\x46" + '{"request":{"address":"wss://h/$hc/p","id":"1","method":"GET","body":true}}' + "\x81\x03abc",
        "\x83\x02\x03\xe8",
    ],
}
for target, seeds in SEEDS.items():
    os.makedirs(f"corpus/{target}", exist_ok=True)
    for i, s in enumerate(seeds):
        open(f"corpus/{target}/seed-{i}", "w").write(s)
