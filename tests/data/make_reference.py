#!/usr/bin/python3
# Regenerates tests/data/reference_detections.json with the reference decoder
# shared/models/tools/verify.py (imported, not copied): every model x every image, conf 0.25,
# per-class NMS 0.45. Boxes are verify.py's own output: (x1, y1, x2, y2) truncated to int.
#
# Needs Debian's OpenCV 4.6 Python binding: apt-get install -y python3-opencv python3-numpy
# (run with /usr/bin/python3, which sees them). Usage, from anywhere:
#   /usr/bin/python3 tests/data/make_reference.py [SHARED_DIR]   (default: ../shared beside the repo)
import hashlib
import json
import os
import sys

import cv2

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, '..', '..', '..', 'shared'))
MODELS_DIR = os.path.join(SHARED, 'models')
sys.path.insert(0, os.path.join(MODELS_DIR, 'tools'))
import verify  # noqa: E402  (the reference decoder)

IMAGES = ['dog.jpg', 'horses.jpg', 'person.jpg']
# verify.py's model key -> (model file the C++ test loads, expected family name in zyolo)
FILES = {
    'yolov8n': ('yolov8n.onnx', 'yolov8'),
    'yolov5n': ('yolov5n.onnx', 'yolov5'),
    'yolox_nano': ('yolox_nano.onnx', 'yolox'),
    'yolo-fastest-1.1-xl': ('yolo-fastest-1.1-xl.cfg', 'darknet'),
    'yolo-fastest-1.1': ('yolo-fastest-1.1.weights', 'darknet'),
}


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def compact(v, indent=0):
    """JSON with one line per detection (a dict holding 'xyxy') and indentation elsewhere."""
    pad, inner = ' ' * indent, ' ' * (indent + 1)
    if isinstance(v, dict) and 'xyxy' not in v:
        items = [f'{inner}{json.dumps(k)}: {compact(x, indent + 1)}' for k, x in v.items()]
        return '{\n' + ',\n'.join(items) + '\n' + pad + '}'
    if isinstance(v, list) and v and isinstance(v[0], dict):
        return '[\n' + ',\n'.join(inner + compact(x, indent + 1) for x in v) + '\n' + pad + ']'
    return json.dumps(v)


def main():
    out = {
        'generator': 'tests/data/make_reference.py (imports shared/models/tools/verify.py)',
        'verify_py_sha256': sha256(os.path.join(MODELS_DIR, 'tools', 'verify.py')),
        'opencv': cv2.__version__,
        'conf_threshold': verify.CONF,
        'nms_threshold': verify.IOU,
        'box_format': 'xyxy: verify.py output (x1, y1, x2, y2) in original image pixels, each truncated by int()',
        'models': {},
    }
    for key, (file, family) in FILES.items():
        m = verify.MODELS[key](MODELS_DIR)
        entry = {'file': file, 'family': family, 'input': m.size, 'images': {}}
        for im in IMAGES:
            img = cv2.imread(os.path.join(SHARED, 'images', im))
            if img is None:
                sys.exit(f'cannot read {os.path.join(SHARED, "images", im)}')
            dets, _ = m.detect(img)
            entry['images'][im] = {
                'width': img.shape[1], 'height': img.shape[0],
                'detections': [{'class_id': verify.NAMES.index(n), 'class': n, 'confidence': s,
                                'xyxy': list(b)} for n, s, b in dets],
            }
        out['models'][key] = entry
    path = os.path.join(HERE, 'reference_detections.json')
    with open(path, 'w') as f:
        f.write(compact(out) + '\n')
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
