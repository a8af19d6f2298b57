document.getElementById('main').textContent = 'Stele';
